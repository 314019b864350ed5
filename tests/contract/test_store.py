"""The store's contract, one suite over SQLite and PostgreSQL: CRUD keyed by API attribute
names, Neutron-style listing (filters, tags, fixed_ips, sorting, keyset pages), JSON columns,
constraint errors, retry of lost races, rollback, cascades, snapshots and threads."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alcor import errors
from alcor.config import load
from alcor.db.migrate import upgrade
from alcor.db.store import DuplicateEntry, Store, Transaction
from alcor.query import ListQuery
from tests.postgres import PostgresCluster, free_port

Row = dict[str, Any]
TS = "2024-01-01T00:00:00Z"


def open_backend(url: str, **db: Any) -> Store:
    store = Store.connect(load({}, db__url=url, **{f"db__{k}": v for k, v in db.items()}).db)
    upgrade(store)
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/contract.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def backend(backend_url: str) -> Iterator[Store]:
    store = open_backend(backend_url)
    yield store
    store.dispose()


# --- rows ------------------------------------------------------------------------------------


def uid() -> str:
    return str(uuid.uuid4())


def standard(**kw: Any) -> Row:
    return {"id": uid(), "project_id": "proj-a", "name": "", "description": "", "tags": [],
            "revision_number": 0, "created_at": TS, "updated_at": TS, **kw}


def network(**kw: Any) -> Row:
    return standard(**{
        "admin_state_up": True, "status": "ACTIVE", "shared": False, "mtu": 1450,
        "router:external": False, "port_security_enabled": True,
        "provider:network_type": "vxlan", "provider:physical_network": None,
        "provider:segmentation_id": None, "dns_domain": "", "vlan_transparent": False,
        "is_default": False, "qos_policy_id": None, "availability_zone_hints": [], **kw,
    })


def subnet(network_id: str, cidr: str = "10.0.0.0/24", **kw: Any) -> Row:
    return standard(**{
        "network_id": network_id, "ip_version": 4, "cidr": cidr, "gateway_ip": None,
        "enable_dhcp": True, "ipv6_ra_mode": None, "ipv6_address_mode": None,
        "allocation_pools": [], "host_routes": [], "dns_nameservers": [], "service_types": [],
        "segment_id": None, "subnetpool_id": None, "dns_publish_fixed_ip": False, **kw,
    })


def port(network_id: str, mac: str, **kw: Any) -> Row:
    return standard(**{
        "network_id": network_id, "admin_state_up": True, "status": "DOWN",
        "mac_address": mac, "device_id": "", "device_owner": "",
        "port_security_enabled": True, "binding:host_id": "", "binding:vif_type": "unbound",
        "binding:vnic_type": "normal", "binding:profile": {}, "binding:vif_details": {},
        "fixed_ips": [], "security_groups": [], "allowed_address_pairs": [],
        "extra_dhcp_opts": [], "dns_name": "", "qos_policy_id": None, "ip_allocation": "immediate",
        **kw,
    })


def insert(store: Store, table: str, *rows: Row) -> None:
    store.write(lambda txn: txn.insert(table, list(rows)))


def insert_tagged(store: Store, table: str, *rows: Row) -> None:
    def fn(txn: Transaction) -> None:
        txn.insert(table, list(rows))
        txn.insert("tags", [{"resource_id": r["id"], "tag": t} for r in rows for t in r["tags"]])

    store.write(fn)


def listed(store: Store, table: str, query: ListQuery) -> list[str]:
    return [r["name"] for r in store.read(lambda txn: txn.list(table, query).items)]


# --- CRUD ------------------------------------------------------------------------------------


def test_insert_then_get_returns_the_row_keyed_by_attribute(backend: Store) -> None:
    row = network(name="n1", tags=["a", "b"], **{"provider:segmentation_id": 7})
    insert(backend, "networks", row)
    got = backend.read(lambda txn: txn.get("networks", row["id"]))
    assert got == row
    assert got is not None and got["shared"] is False and got["admin_state_up"] is True


def test_get_missing_row_is_none(backend: Store) -> None:
    assert backend.read(lambda txn: txn.get("networks", "missing")) is None


def test_insert_of_no_rows_is_a_no_op(backend: Store) -> None:
    insert(backend, "networks")
    assert backend.read(lambda txn: txn.count("networks")) == 0


def test_select_with_any_of_and_none_conditions(backend: Store) -> None:
    rows = [network(name=f"n{i}", qos_policy_id=None if i % 2 else f"q{i}") for i in range(6)]
    insert(backend, "networks", *rows)

    def fn(txn: Transaction) -> Any:
        return (
            txn.select("networks", {"name": ["n1", "n2", "n5"]}, order_by=("name",)),
            txn.select("networks", {"qos_policy_id": None}, columns=("name",),
                       order_by=("name",)),
            txn.select("networks", {"name": "n0"}),
            txn.select("networks", {"name": []}),
        )

    any_of, nulls, one, empty = backend.read(fn)
    assert [r["name"] for r in any_of] == ["n1", "n2", "n5"]
    assert any_of[0] == rows[1]
    assert nulls == [{"name": "n1"}, {"name": "n3"}, {"name": "n5"}]
    assert one == [rows[0]]
    assert empty == []
    locked = backend.write(lambda txn: txn.select("networks", {"name": "n0"}, for_update=True))
    assert locked == [rows[0]]


def test_scalars_count_exists(backend: Store) -> None:
    insert(backend, "networks", *(network(mtu=1400 + i, shared=i < 2) for i in range(5)))

    def fn(txn: Transaction) -> Any:
        return (
            sorted(txn.scalars("networks", "mtu", {"shared": True})),
            txn.count("networks"),
            txn.count("networks", {"shared": False}),
            txn.exists("networks", {"mtu": 1404}),
            txn.exists("networks", {"mtu": 1405}),
        )

    assert backend.read(fn) == ([1400, 1401], 5, 3, True, False)


def test_update_and_delete_report_affected_rows(backend: Store) -> None:
    a, b, c = network(name="a"), network(name="b"), network(name="c")
    insert(backend, "networks", a, b, c)
    assert backend.write(lambda t: t.update("networks", {"id": [a["id"], b["id"]]},
                                            {"mtu": 9000, "tags": ["x"]})) == 2
    assert backend.write(lambda t: t.update("networks", {"id": "missing"}, {"mtu": 1})) == 0
    assert backend.write(lambda t: t.delete("networks", {"name": "c"})) == 1
    assert backend.write(lambda t: t.delete("networks", {"name": "c"})) == 0
    rows = backend.read(lambda t: t.select("networks", order_by=("name",)))
    assert [(r["name"], r["mtu"], r["tags"]) for r in rows] == [
        ("a", 9000, ["x"]), ("b", 9000, ["x"])]


def test_json_columns_round_trip(backend: Store) -> None:
    net = network()
    profile = {"nested": {"list": [1, 2.5, None, True, "é✓"], "empty": {}}, "n": -3}
    pools = [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    p = port(net["id"], "fa:16:3e:00:00:01", **{
        "binding:profile": profile, "binding:vif_details": {},
        "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}],
        "allowed_address_pairs": [], "extra_dhcp_opts": [{"opt_name": "a", "opt_value": "b"}],
    })
    s = subnet(net["id"], allocation_pools=pools, dns_nameservers=["8.8.8.8"])
    insert(backend, "networks", net)
    insert(backend, "ports", p)
    insert(backend, "subnets", s)
    got_port = backend.read(lambda t: t.get("ports", p["id"]))
    got_subnet = backend.read(lambda t: t.get("subnets", s["id"]))
    assert got_port == p
    assert got_subnet is not None and got_subnet["allocation_pools"] == pools
    backend.write(lambda t: t.update("ports", {"id": p["id"]}, {"binding:profile": {}}))
    assert backend.read(lambda t: t.scalars("ports", "binding:profile")) == [{}]


# --- listing ---------------------------------------------------------------------------------


def test_list_filters_any_of_and_none(backend: Store) -> None:
    insert(backend, "networks", *(
        network(name=f"n{i}", mtu=1400 + i % 3, qos_policy_id=None if i < 2 else "q")
        for i in range(6)
    ))
    query = ListQuery(filters={"mtu": [1400, 1402]}, sorts=[("name", True)])
    assert listed(backend, "networks", query) == ["n0", "n2", "n3", "n5"]
    query = ListQuery(filters={"qos_policy_id": [None]}, sorts=[("name", True)])
    assert listed(backend, "networks", query) == ["n0", "n1"]
    query = ListQuery(filters={"qos_policy_id": [None, "q"], "mtu": [1401]},
                      sorts=[("name", True)])
    assert listed(backend, "networks", query) == ["n1", "n4"]
    query = ListQuery(filters={"provider:network_type": ["vxlan"], "shared": [False]},
                      sorts=[("name", True)])
    assert len(listed(backend, "networks", query)) == 6


def test_list_is_scoped_to_projects(backend: Store) -> None:
    insert(backend, "networks", network(name="a1", project_id="a"),
           network(name="b1", project_id="b"), network(name="c1", project_id="c"))
    sort = [("name", True)]
    assert listed(backend, "networks", ListQuery(project_ids=["a", "c"], sorts=sort)) == [
        "a1", "c1"]
    assert listed(backend, "networks", ListQuery(project_ids=[], sorts=sort)) == []
    assert listed(backend, "networks", ListQuery(sorts=sort)) == ["a1", "b1", "c1"]


@pytest.mark.parametrize(("field", "names", "expected"), [
    ("tags_all", ["red", "blue"], ["rb", "rbg"]),
    ("tags_any", ["red", "green"], ["r", "rb", "rbg", "g"]),
    ("not_tags_all", ["red", "blue"], ["none", "r", "g"]),
    ("not_tags_any", ["red", "green"], ["none"]),
    ("tags_all", ["red", "red"], ["r", "rb", "rbg"]),
])
def test_list_tag_filters(
    backend: Store, field: str, names: list[str], expected: list[str]
) -> None:
    tagged = {"none": [], "r": ["red"], "rb": ["red", "blue"], "rbg": ["red", "blue", "green"],
              "g": ["green"]}
    insert_tagged(backend, "networks", *(
        network(name=name, tags=tags, created_at=f"2024-01-0{i + 1}T00:00:00Z")
        for i, (name, tags) in enumerate(tagged.items())
    ))
    kwargs: dict[str, Any] = {field: names}
    query = ListQuery(sorts=[("created_at", True)], **kwargs)
    assert listed(backend, "networks", query) == expected


def test_list_tag_filters_combine(backend: Store) -> None:
    insert_tagged(backend, "networks", network(name="a", tags=["x", "y"]),
                  network(name="b", tags=["x"]), network(name="c", tags=["x", "z"]))
    query = ListQuery(tags_any=["x"], not_tags_any=["y", "z"])
    assert listed(backend, "networks", query) == ["b"]


@pytest.fixture
def addressed_ports(backend: Store) -> dict[str, str]:
    """Ports with allocations on two subnets; returns subnet name -> subnet id."""
    net = network()
    s4 = subnet(net["id"], "10.0.0.0/24")
    s6 = subnet(net["id"], "fd00::/64", ip_version=6)
    allocs = {
        "p1": [(s4, "10.0.0.10")],
        "p2": [(s4, "10.0.0.11"), (s6, "fd00::ab")],
        "p3": [(s6, "fd00::1")],
        "p4": [(s4, "10.0.0.100")],
        "p5": [],
    }
    ports = [port(net["id"], f"fa:16:3e:00:00:0{i}", name=name)
             for i, name in enumerate(allocs)]

    def fn(txn: Transaction) -> None:
        txn.insert("networks", net)
        txn.insert("subnets", [s4, s6])
        txn.insert("ports", ports)
        txn.insert("ip_allocations", [
            {"subnet_id": s["id"], "ip_address": ip, "network_id": net["id"], "port_id": p["id"]}
            for p in ports for s, ip in allocs[p["name"]]
        ])

    backend.write(fn)
    return {"v4": s4["id"], "v6": s6["id"]}


def test_list_fixed_ips_filters(backend: Store, addressed_ports: dict[str, str]) -> None:
    v4, v6 = addressed_ports["v4"], addressed_ports["v6"]

    def names(*specs: dict[str, str]) -> list[str]:
        return listed(backend, "ports", ListQuery(fixed_ips=list(specs), sorts=[("name", True)]))

    assert names({"ip_address": "10.0.0.11"}) == ["p2"]
    assert names({"subnet_id": v6}) == ["p2", "p3"]
    assert names({"subnet_id": v4, "ip_address": "fd00::ab"}) == []
    assert names({"subnet_id": v6, "ip_address": "fd00::ab"}) == ["p2"]
    assert names({"ip_address_substr": "0.0.1"}) == ["p1", "p2", "p4"]
    assert names({"ip_address_substr": "10.0.0.10"}) == ["p1", "p4"]
    assert names({"ip_address_substr": "FD00::A"}) == ["p2"]
    assert names({"ip_address_substr": "%"}) == []
    assert names({"ip_address_substr": "10_0"}) == []
    assert names({"ip_address_substr": "fd00", "subnet_id": v4}) == []
    assert names({"ip_address": "10.0.0.10"}, {"subnet_id": v6}) == ["p1", "p2", "p3"]


# --- sorting and keyset pagination -----------------------------------------------------------

SORTS: list[list[tuple[str, bool]]] = [
    [],
    [("name", True)],
    [("name", False)],
    [("provider:physical_network", True), ("mtu", False)],
    [("provider:physical_network", False), ("name", True)],
    [("qos_policy_id", True), ("provider:segmentation_id", False), ("id", False)],
    [("shared", False), ("provider:segmentation_id", True)],
    [("id", False)],
]


def sortable_networks() -> list[Row]:
    """Rows with repeated values, NULLs and text that sorts differently by locale."""
    words = ["alpha", "Beta", "beta", "_x", "Ωmega", "a b", "alpha"]
    return [
        network(
            name=words[i % len(words)],
            mtu=1400 + i % 4,
            shared=i % 3 == 0,
            qos_policy_id=None if i % 5 else f"q{i % 2}",
            **{"provider:physical_network": None if i % 3 == 1 else f"phys{i % 2}",
               "provider:network_type": f"type{i}",
               "provider:segmentation_id": None if i % 4 == 0 else i % 6},
        )
        for i in range(41)
    ]


def reference_order(rows: list[Row], sorts: list[tuple[str, bool]]) -> list[str]:
    """The documented order: each key in turn, NULLs first ascending (last descending),
    strings by code point, then ``id`` (ascending unless sorted explicitly)."""
    keys = [(a, asc) for a, asc in sorts if a != "id"]
    keys.append(("id", next((asc for a, asc in sorts if a == "id"), True)))
    ordered = list(rows)
    for attr, asc in reversed(keys):  # stable sorts, least significant key first
        ordered.sort(key=functools.partial(null_first_key, attr), reverse=not asc)
    return [r["id"] for r in ordered]


def null_first_key(attr: str, row: Row) -> tuple[bool, Any]:
    value = row[attr]
    return (value is not None, value if value is not None else 0)


def walk(store: Store, sorts: list[tuple[str, bool]], limit: int, reverse: bool) -> list[str]:
    """Every id by following markers page after page; checks ``has_more`` on the way."""
    pages: list[list[str]] = []
    marker: str | None = None
    while True:
        query = ListQuery(sorts=sorts, limit=limit, marker=marker, page_reverse=reverse)
        page = store.read(lambda txn, q=query: txn.list("networks", q))
        ids = [r["id"] for r in page.items]
        assert len(ids) == limit or not page.has_more
        pages.append(ids)
        if not page.has_more:
            break
        marker = ids[0] if reverse else ids[-1]
    if reverse:
        pages.reverse()
    return [i for page in pages for i in page]


@pytest.mark.parametrize("sorts", SORTS, ids=lambda s: ",".join(f"{a}:{d}" for a, d in s))
def test_sorting_and_keyset_pages_walk_every_row_once(
    backend: Store, sorts: list[tuple[str, bool]]
) -> None:
    rows = sortable_networks()
    insert(backend, "networks", *rows)
    expected = reference_order(rows, sorts)
    whole = backend.read(lambda txn: txn.list("networks", ListQuery(sorts=sorts)))
    assert [r["id"] for r in whole.items] == expected
    assert whole.has_more is False
    for limit in (1, 7, 41, 100):
        assert walk(backend, sorts, limit, reverse=False) == expected
        assert walk(backend, sorts, limit, reverse=True) == expected


def test_pages_are_exact_under_a_linguistic_postgresql_collation(
    pg_cluster: PostgresCluster,
) -> None:
    """A deployment's database may sort text by locale (not by code point as SQLite and the
    test databases do): the order differs, but paging still yields every row exactly once."""
    store = open_backend(pg_cluster.create_database("icu", icu_locale="en-US"))
    try:
        insert(store, "networks", *sortable_networks())
        by_name = store.read(lambda txn: txn.list("networks", ListQuery(sorts=[("name", True)])))
        names = list(dict.fromkeys(r["name"] for r in by_name.items))
        assert names == ["_x", "a b", "alpha", "beta", "Beta", "Ωmega"]  # code points: "Beta" 1st
        for sorts in ([("name", True)], [("name", False), ("mtu", True)]):
            whole = store.read(lambda txn, s=sorts: txn.list("networks", ListQuery(sorts=s)))
            expected = [r["id"] for r in whole.items]
            assert len(set(expected)) == 41
            for limit in (1, 6):
                assert walk(store, sorts, limit, reverse=False) == expected
                assert walk(store, sorts, limit, reverse=True) == expected
    finally:
        store.dispose()


def test_page_after_marker_combines_with_filters(backend: Store) -> None:
    rows = sortable_networks()
    insert(backend, "networks", *rows)
    sorts = [("mtu", True), ("name", False)]
    shared = [r for r in rows if r["shared"]]
    expected = reference_order(shared, sorts)
    query = ListQuery(filters={"shared": [True]}, sorts=sorts, limit=3, marker=expected[4])
    page = backend.read(lambda txn: txn.list("networks", query))
    assert [r["id"] for r in page.items] == expected[5:8]
    assert page.has_more == (len(expected) > 8)


# --- constraints and transactions ------------------------------------------------------------


def test_unique_violation_is_duplicate_entry(backend: Store) -> None:
    net = network()
    insert(backend, "networks", net)
    insert(backend, "ports", port(net["id"], "fa:16:3e:00:00:01"))
    with pytest.raises(DuplicateEntry):
        insert(backend, "ports", port(net["id"], "fa:16:3e:00:00:01"))
    with pytest.raises(DuplicateEntry):
        insert(backend, "networks", net)
    assert backend.read(lambda txn: txn.count("ports")) == 1


def test_write_gives_up_after_max_retries(backend_url: str) -> None:
    store = open_backend(backend_url, max_retries=3)
    net = network()
    insert(store, "networks", net)
    calls: list[int] = []

    def always_duplicate(txn: Transaction) -> None:
        calls.append(1)
        txn.insert("networks", net)

    try:
        with pytest.raises(DuplicateEntry):
            store.write(always_duplicate)
    finally:
        store.dispose()
    assert len(calls) == 3


def test_write_reruns_the_whole_function_after_a_lost_race(backend: Store) -> None:
    taken = network(**{"provider:segmentation_id": 1})
    insert(backend, "networks", taken)
    attempts: list[int] = []

    def allocate(txn: Transaction) -> int:
        attempts.append(1)
        # The first attempt acts on a stale read, as if another writer got in between.
        used = set() if len(attempts) == 1 else set(
            txn.scalars("networks", "provider:segmentation_id"))
        vni = min(set(range(1, 10)) - used)
        net = network(name=f"attempt{len(attempts)}", **{"provider:segmentation_id": vni})
        txn.insert("tags", {"resource_id": net["id"], "tag": "t"})
        txn.insert("networks", net)
        return vni

    assert backend.write(allocate) == 2
    assert len(attempts) == 2
    names = backend.read(lambda txn: sorted(txn.scalars("networks", "name")))
    assert names == ["", "attempt2"]
    assert backend.read(lambda txn: txn.count("tags")) == 1


def test_failing_function_rolls_back_everything(backend: Store) -> None:
    net = network()
    insert(backend, "networks", net)
    calls: list[int] = []

    def fn(txn: Transaction) -> None:
        calls.append(1)
        txn.insert("networks", network(name="new"))
        txn.insert("subnets", subnet(net["id"]))
        txn.update("networks", {"id": net["id"]}, {"name": "renamed"})
        txn.delete("networks", {"id": "nothing"})
        raise errors.NetworkInUse(net_id=net["id"])

    with pytest.raises(errors.NetworkInUse):
        backend.write(fn)
    assert len(calls) == 1
    assert backend.read(lambda txn: txn.select("networks")) == [net]
    assert backend.read(lambda txn: txn.count("subnets")) == 0


def test_write_each_keeps_each_call_apart(backend: Store) -> None:
    """One transaction, a savepoint per call: a failing call (refused by the function or by
    the database) is rolled back alone, a call that loses a race runs again."""
    taken = network(**{"provider:segmentation_id": 1})
    insert(backend, "networks", taken)
    tries: list[int] = []

    def ok(txn: Transaction, name: str) -> str:
        txn.insert("networks", network(name=name))
        return name

    def refused(txn: Transaction) -> None:
        txn.insert("networks", network(name="refused"))
        raise errors.InvalidInput(error_message="no")

    def orphan(txn: Transaction) -> None:
        txn.insert("networks", network(name="orphan-parent"))
        txn.insert("subnets", subnet("no-such-network"))

    def loses_once(txn: Transaction) -> int:
        tries.append(1)
        vni = 1 if len(tries) == 1 else 2
        txn.insert("networks", network(name="raced", **{"provider:segmentation_id": vni}))
        return vni

    outcomes = backend.write_each([
        (ok, ("a",)), (refused, ()), (orphan, ()), (loses_once, ()), (ok, ("b",)),
    ])
    assert outcomes[0] == "a" and outcomes[3] == 2 and outcomes[4] == "b"
    assert isinstance(outcomes[1], errors.InvalidInput)
    assert isinstance(outcomes[2], errors.Conflict)
    assert len(tries) == 2
    names = backend.read(lambda txn: sorted(txn.scalars("networks", "name")))
    assert names == ["", "a", "b", "raced"]


def test_missing_parent_is_conflict(backend: Store) -> None:
    with pytest.raises(errors.Conflict) as exc_info:
        insert(backend, "subnets", subnet("no-such-network"))
    assert not isinstance(exc_info.value, DuplicateEntry)


def test_deleting_a_network_cascades(backend: Store) -> None:
    net, other = network(), network()
    s1, s2, s3 = subnet(net["id"]), subnet(net["id"], "10.1.0.0/24"), subnet(other["id"])
    p = port(net["id"], "fa:16:3e:00:00:01")

    def fn(txn: Transaction) -> None:
        txn.insert("networks", [net, other])
        txn.insert("subnets", [s1, s2, s3])
        txn.insert("ports", p)
        txn.insert("ip_allocations", {"subnet_id": s1["id"], "ip_address": "10.0.0.2",
                                      "network_id": net["id"], "port_id": p["id"]})

    backend.write(fn)
    assert backend.write(lambda txn: txn.delete("networks", {"id": net["id"]})) == 1

    def remaining(txn: Transaction) -> Any:
        return (txn.scalars("subnets", "id"), txn.count("ports"), txn.count("ip_allocations"))

    assert backend.read(remaining) == ([s3["id"]], 0, 0)


def test_read_sees_one_snapshot(backend: Store) -> None:
    insert(backend, "networks", network())

    def fn(txn: Transaction) -> tuple[int, int]:
        before = txn.count("networks")
        writer = threading.Thread(target=insert, args=(backend, "networks", network()))
        writer.start()  # commits on another connection meanwhile
        writer.join()
        return before, txn.count("networks")

    assert backend.read(fn) == (1, 1)
    assert backend.read(lambda txn: txn.count("networks")) == 2


# --- threads ---------------------------------------------------------------------------------


def allocate_segment(txn: Transaction, name: str, before_insert: Callable[[], None]) -> int:
    """Take the lowest free segmentation id: a read-then-insert that can lose a race."""
    used = set(txn.scalars("networks", "provider:segmentation_id"))
    vni = next(v for v in range(1, 1000) if v not in used)
    before_insert()
    txn.insert("networks", network(name=name, **{"provider:segmentation_id": vni}))
    return vni


def held_connections(store: Store) -> int:
    """Connections still checked out, besides the one a SQLite store keeps for this thread
    (on SQLite each thread keeps its own; a finished thread's goes back)."""
    held = int(store.engine.pool.checkedout())  # type: ignore[attr-defined]
    return held - 1 if store.is_sqlite else held


def test_concurrent_writers_each_allocate_a_unique_value(backend_url: str) -> None:
    threads = 24
    store = open_backend(backend_url, max_retries=threads + 1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            got = list(pool.map(
                lambda i: store.write(allocate_segment, f"n{i}", lambda: None), range(threads)))
        assert sorted(got) == list(range(1, threads + 1))
        stored = store.read(lambda txn: txn.select("networks"))
        assert sorted((r["name"], r["provider:segmentation_id"]) for r in stored) == sorted(
            (f"n{i}", v) for i, v in enumerate(got))
        assert held_connections(store) == 0
    finally:
        store.dispose()


def test_postgresql_writers_that_collide_are_retried(pg_url: str) -> None:
    """Every writer reads the same free value before any inserts: all but one hit the
    unique constraint (blocking until the winner commits, READ COMMITTED) and run again."""
    threads = 12
    store = open_backend(pg_url, max_retries=threads + 1, pool_size=threads)
    barrier = threading.Barrier(threads)
    attempts: list[str] = []

    def first_attempts_collide(name: str) -> Callable[[], None]:
        def before_insert() -> None:
            attempts.append(name)
            if attempts.count(name) == 1:
                barrier.wait(timeout=60)

        return before_insert

    try:
        with ThreadPoolExecutor(threads) as pool:
            got = list(pool.map(
                lambda i: store.write(allocate_segment, f"n{i}", first_attempts_collide(f"n{i}")),
                range(threads),
            ))
        assert sorted(got) == list(range(1, threads + 1))
        assert len(attempts) > threads  # the race really happened and was retried
        assert store.read(lambda txn: txn.count("networks")) == threads
    finally:
        store.dispose()


def test_postgresql_deadlock_victim_is_retried(pg_url: str) -> None:
    """Two writers take the same two keys in opposite order: PostgreSQL aborts one of them
    (deadlock, 40P01) and ``write`` runs it again, after the other committed.

    The victim's second attempt waits for the winner's commit: started sooner, it would not
    see the winner's uncommitted key, insert it too, block, and lose again on the unique
    constraint once the winner commits (a third attempt, under load)."""
    store = open_backend(pg_url)
    barrier = threading.Barrier(2)
    attempts: list[str] = []
    committed = {"k1": threading.Event(), "k2": threading.Event()}

    def take(txn: Transaction, first: str, second: str) -> None:
        attempts.append(first)
        if attempts.count(first) > 1:  # the victim again: the other writer starts with second
            assert committed[second].wait(timeout=60), "the deadlock's winner never committed"
        for i, key in enumerate((first, second)):
            row = {"resource_id": key, "tag": "lock"}
            if not txn.exists("tags", row):
                txn.insert("tags", row)
            if i == 0 and attempts.count(first) == 1:
                barrier.wait(timeout=60)

    def write(first: str, second: str) -> None:
        store.write(take, first, second)
        committed[first].set()

    try:
        with ThreadPoolExecutor(2) as pool:
            done = [pool.submit(write, "k1", "k2"), pool.submit(write, "k2", "k1")]
            for future in done:
                future.result()
        assert len(attempts) == 3
        assert sorted(store.read(lambda txn: txn.scalars("tags", "resource_id"))) == ["k1", "k2"]
    finally:
        store.dispose()


def test_connection_pool_serves_many_threads(backend_url: str) -> None:
    store = open_backend(backend_url, pool_size=4)
    net = network()
    insert(store, "networks", net)

    def work(i: int) -> int:
        store.write(lambda txn: txn.insert("ports", port(net["id"], f"fa:16:3e:00:01:{i:02x}")))
        return int(store.read(lambda txn: txn.count("ports", {"network_id": net["id"]})))

    try:
        with ThreadPoolExecutor(32) as pool:
            counts = list(pool.map(work, range(200)))
        assert max(counts) == 200
        assert store.read(lambda txn: txn.count("ports")) == 200
        assert held_connections(store) == 0
    finally:
        store.dispose()


# --- availability ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "sqlite:////nonexistent-dir/alcor.db",
    "postgresql+psycopg://postgres@127.0.0.1:{port}/alcor",
], ids=["sqlite", "postgresql"])
def test_unreachable_database_is_service_unavailable(url: str) -> None:
    store = Store.connect(load({}, db__url=url.format(port=free_port())).db)
    try:
        with pytest.raises(errors.ServiceUnavailable):
            store.read(lambda txn: txn.count("networks"))
        with pytest.raises(errors.ServiceUnavailable):
            store.write(lambda txn: txn.insert("networks", network()))
    finally:
        store.dispose()


def test_exhausted_postgresql_pool_is_service_unavailable(pg_url: str) -> None:
    settings = load({}, db__url=pg_url).db
    engine = sa.create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    store = Store(engine, settings)
    upgrade(store)
    try:
        with pytest.raises(errors.ServiceUnavailable):
            store.read(lambda txn: store.read(lambda inner: inner.count("networks")))
        assert store.read(lambda txn: txn.count("networks")) == 0
    finally:
        store.dispose()
