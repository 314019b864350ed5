"""Object wiring: settings in, a store, the services and the ASGI app out.  No logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alcor.api.app import Services, build_app
from alcor.config import Settings
from alcor.db.migrate import upgrade
from alcor.db.store import Store
from alcor.services.networks import NetworkService
from alcor.services.ports import PortService
from alcor.services.security_groups import SecurityGroupRuleService, SecurityGroupService
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


def build_services(settings: Settings, store: Store) -> Services:
    return Services(
        by_collection={
            "networks": NetworkService(store, settings.ipam),
            "subnets": SubnetService(store),
            "ports": PortService(store, settings.ipam),
            "security-groups": SecurityGroupService(store),
            "security-group-rules": SecurityGroupRuleService(store),
        },
        store=store,
        inline=store.is_sqlite,
    )


def build_server_app(settings: Settings, store: Store | None = None) -> Any:
    store = store or open_store(settings)
    return build_app(settings, build_services(settings, store))
