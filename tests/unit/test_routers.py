"""The router and floating IP services for callers who are not admins (the HTTP tests run
without authentication, where every caller is): what another project's caller sees, and the
ports made on the caller's behalf on networks it does not own."""

from __future__ import annotations

from typing import Any

import pytest

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.context import RequestContext
from alcor.services.routers import RouterService

Row = dict[str, Any]

ADMIN = RequestContext.admin("admin")
ALICE = RequestContext(project_id="proj-a", is_admin=False, roles=("member",))
BOB = RequestContext(project_id="proj-b", is_admin=False, roles=("member",))


def create(services: Services, ctx: RequestContext, collection: str, **body: Any) -> Row:
    item = apply_create(RESOURCES[collection], body, ctx.project_id)
    return services.by_collection[collection].create(ctx, [item])[0]


@pytest.fixture
def routers(services: Services) -> RouterService:
    service = services.by_collection["routers"]
    assert isinstance(service, RouterService)
    return service


@pytest.fixture
def public(services: Services) -> Row:
    """The admin's external network (not shared) with one subnet."""
    net = create(services, ADMIN, "networks", name="public", **{"router:external": True})
    create(services, ADMIN, "subnets", network_id=net["id"], cidr="203.0.113.0/24",
           ip_version=4)
    return net


def test_another_projects_router_is_not_found(services: Services, routers: RouterService
                                             ) -> None:
    r = create(services, ALICE, "routers", name="r")
    with pytest.raises(errors.RouterNotFound):
        routers.get(BOB, r["id"])
    with pytest.raises(errors.RouterNotFound):
        routers.add_routes(BOB, r["id"], [])
    assert routers.get(ALICE, r["id"])["id"] == r["id"]


def test_gateway_on_the_admins_external_network(services: Services, routers: RouterService,
                                                 public: Row) -> None:
    r = create(services, ALICE, "routers", name="r",
               external_gateway_info={"network_id": public["id"]})
    assert r["external_gateway_info"]["network_id"] == public["id"]
    gateway = services.by_collection["ports"].get(ADMIN, r["gw_port_id"])
    assert (gateway["project_id"], gateway["device_owner"]) == ("", "network:router_gateway")
    with pytest.raises(errors.PortNotFound):
        services.by_collection["ports"].get(ALICE, r["gw_port_id"])


@pytest.mark.parametrize("extra", [{"enable_snat": False}, {"external_fixed_ips": [
    {"ip_address": "203.0.113.50"}]}])
def test_only_admins_choose_snat_and_gateway_addresses(
    services: Services, routers: RouterService, public: Row, extra: dict[str, Any]
) -> None:
    """Neutron's default policy: a member names the external network, an admin may also
    choose enable_snat and external_fixed_ips, on create and on update."""
    key = next(iter(extra))
    info = {"network_id": public["id"], **extra}
    with pytest.raises(errors.PolicyNotAuthorized,
                       match=rf"rule:create_router:external_gateway_info:{key}\)"):
        create(services, ALICE, "routers", name="r", external_gateway_info=info)
    r = create(services, ALICE, "routers", name="r",
               external_gateway_info={"network_id": public["id"]})
    with pytest.raises(errors.PolicyNotAuthorized,
                       match=rf"rule:update_router:external_gateway_info:{key}\)"):
        routers.update(ALICE, r["id"], {"external_gateway_info": info})
    done = routers.update(ADMIN, r["id"], {"external_gateway_info": info})
    assert done["external_gateway_info"]["network_id"] == public["id"]
    if key == "enable_snat":
        assert done["external_gateway_info"]["enable_snat"] is False
    else:
        assert done["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == (
            "203.0.113.50")


def test_interface_on_another_projects_shared_subnet_is_refused(
    services: Services, routers: RouterService
) -> None:
    shared = create(services, ADMIN, "networks", name="shared", shared=True)
    sub = create(services, ADMIN, "subnets", network_id=shared["id"], cidr="10.0.0.0/24",
                 ip_version=4)
    r = create(services, ALICE, "routers", name="r")
    with pytest.raises(errors.BadRequest, match="is not owned by project making the request"):
        routers.add_interface(ALICE, r["id"], None, sub["id"])
    private = create(services, BOB, "networks", name="bob")
    bob_sub = create(services, BOB, "subnets", network_id=private["id"], cidr="10.1.0.0/24",
                     ip_version=4)
    with pytest.raises(errors.SubnetNotFound):
        routers.add_interface(ALICE, r["id"], None, bob_sub["id"])


def test_floating_ip_for_a_member(services: Services, routers: RouterService, public: Row
                                  ) -> None:
    net = create(services, ALICE, "networks", name="n")
    sub = create(services, ALICE, "subnets", network_id=net["id"], cidr="10.0.0.0/24",
                 ip_version=4)
    r = create(services, ALICE, "routers", name="r",
               external_gateway_info={"network_id": public["id"]})
    routers.add_interface(ALICE, r["id"], None, sub["id"])
    vm = create(services, ALICE, "ports", network_id=net["id"])
    fip = create(services, ALICE, "floatingips", floating_network_id=public["id"],
                 port_id=vm["id"])
    assert (fip["router_id"], fip["status"]) == (r["id"], "ACTIVE")
    bobs = create(services, BOB, "networks", name="b")
    create(services, BOB, "subnets", network_id=bobs["id"], cidr="10.2.0.0/24", ip_version=4)
    bob_vm = create(services, BOB, "ports", network_id=bobs["id"])
    with pytest.raises(errors.PortNotFound):
        create(services, ALICE, "floatingips", floating_network_id=public["id"],
               port_id=bob_vm["id"])


def test_members_may_not_choose_addresses_nor_see_router_internals() -> None:
    body = {"floating_network_id": "0f8e6c3a-5b4d-4c2e-9a1f-2b3c4d5e6f70",
            "floating_ip_address": "203.0.113.5"}
    with pytest.raises(errors.PolicyNotAuthorized):
        apply_create(RESOURCES["floatingips"], body, "proj-a", is_admin=False)
    rendered = RESOURCES["routers"].render({"id": "r", "distributed": False, "ha": False},
                                           admin=False)
    assert "distributed" not in rendered and "ha" not in rendered
