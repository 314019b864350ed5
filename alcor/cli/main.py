"""The ``alcor`` command: parse arguments, load settings, wire objects, run.  No logic."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence

from alcor import __version__
from alcor.config import Settings, load


def tune_gc() -> None:
    """Keep the cyclic collector off the request path: what start-up built is frozen out of
    its scans, and young collections run every 50,000 allocations instead of 700 (a request
    allocates thousands of short-lived objects that reference counting frees anyway)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _server(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from alcor.cli.wiring import build_server_app

    app = build_server_app(settings)
    tune_gc()
    print(
        f"Alcor {__version__} serving the Neutron API on "
        f"http://{settings.api.host}:{settings.api.port}/ (database: {settings.db.url})\n"
        "Point the openstack CLI at it with:\n"
        f"  openstack --os-auth-type none --os-endpoint "
        f"http://{settings.api.host}:{settings.api.port}/ network list",
        flush=True,
    )
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level=args.log_level,
                access_log=args.access_log, loop="uvloop", http="httptools")
    return 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from alcor.cli.wiring import open_store

    open_store(settings).dispose()
    print(f"database {settings.db.url} is at the newest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alcor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"alcor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the all-in-one server (API on SQLite by default)")
    server.add_argument("--host", help="listen address (default 127.0.0.1)")
    server.add_argument("--port", type=int, help="listen port (default 9696)")
    server.add_argument("--db-url", help="SQLAlchemy database URL (default sqlite:///var/alcor.db)")
    server.add_argument("--log-level", default="info")
    server.add_argument("--access-log", action="store_true", help="log every request")
    server.set_defaults(func=_server)
    api = sub.add_parser("api", help="run a stateless API replica (same options as server)")
    for action in server._actions[1:]:
        api._add_action(action)
    api.set_defaults(func=_server)
    db = sub.add_parser("db-upgrade", help="migrate the database to the newest schema")
    db.add_argument("--db-url")
    db.set_defaults(func=_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {}
    if getattr(args, "host", None):
        overrides["api__host"] = args.host
    if getattr(args, "port", None):
        overrides["api__port"] = args.port
    if getattr(args, "db_url", None):
        overrides["db__url"] = args.db_url
    settings = load(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
