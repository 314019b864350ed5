"""Object wiring: settings in, a store, the services and the ASGI app out.  No logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alcor.api.app import Services, build_app
from alcor.api.controller import Provisioning
from alcor.config import Settings
from alcor.db.migrate import upgrade
from alcor.db.store import Store
from alcor.dpm.controller import Controller
from alcor.dpm.pusher import GoalStatePusher, GrpcPusher
from alcor.dpm.server import DataplaneRuntime, WithDataplane
from alcor.dpm.waiting import Poller
from alcor.services.floatingips import FloatingIPService
from alcor.services.networks import NetworkService
from alcor.services.ports import PortService
from alcor.services.routers import RouterService
from alcor.services.security_groups import SecurityGroupRuleService, SecurityGroupService
from alcor.services.segment_ranges import NetworkSegmentRangeService
from alcor.services.segments import SegmentService
from alcor.services.subnets import SubnetService


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    url = settings.db.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////:memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            path.parent.mkdir(parents=True, exist_ok=True)
    store = Store.connect(settings.db)
    if migrate:
        upgrade(store)
    return store


def build_services(
    settings: Settings, store: Store, provisioning: Provisioning | None = None
) -> Services:
    ports = PortService(store, settings.ipam)
    services = Services(
        by_collection={
            "networks": NetworkService(store, settings.ipam),
            "subnets": SubnetService(store),
            "ports": ports,
            "security-groups": SecurityGroupService(store),
            "security-group-rules": SecurityGroupRuleService(store),
            "routers": RouterService(store, ports),
            "floatingips": FloatingIPService(store, ports),
            "segments": SegmentService(store, settings.ipam),
            "network_segment_ranges": NetworkSegmentRangeService(store, settings.ipam),
        },
        store=store,
        inline=store.is_sqlite,
        provisioning=provisioning,
    )
    for service in services.by_collection.values():
        service.quota_defaults = settings.quotas
    return services


def build_controller(
    settings: Settings, store: Store, pusher: GoalStatePusher | None = None
) -> DataplaneRuntime:
    """The data-plane controller with its gRPC server (not started)."""
    pusher = pusher or GrpcPusher(timeout=settings.dpm.push_deadline)
    return DataplaneRuntime(Controller(store, settings.dpm, pusher), settings.dpm.grpc_listen)


def build_server_app(
    settings: Settings, store: Store | None = None, runtime: DataplaneRuntime | None = None
) -> Any:
    """The API app; with ``runtime``, the controller runs in it (started by its lifespan),
    otherwise requests that wait for provisioning poll the database."""
    store = store or open_store(settings)
    if runtime is None:
        return build_app(settings, build_services(settings, store, Poller(store, settings.dpm)))
    services = build_services(settings, store, runtime.controller)
    return WithDataplane(build_app(settings, services), runtime)
