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

    from alcor.cli.wiring import build_controller, build_server_app, open_store

    store = open_store(settings)
    runtime = build_controller(settings, store) if args.command == "server" else None
    app = build_server_app(settings, store, runtime)
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


def _controller(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from alcor.cli.wiring import build_controller, open_store
    from alcor.dpm.server import run_standalone

    return asyncio.run(run_standalone(build_controller(settings, open_store(settings))))


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from alcor.cli.wiring import open_store

    open_store(settings).dispose()
    print(f"database {settings.db.url} is at the newest schema")
    return 0


def _agent(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from alcor.agent.runner import AgentOptions, run

    options = AgentOptions(
        listen=args.listen, node_id=args.node_id, node_name=args.node_name or args.node_id,
        local_ip=args.local_ip, mac_address=args.mac, veth=args.veth,
        host_dvr_mac=args.host_dvr_mac, api_url=args.api_url, controller=args.controller,
        state_file=args.state_file, dataplane=args.dataplane,
        physical_networks=tuple(args.physical_network), auth=settings.auth,
    )
    return asyncio.run(run(options))


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from alcor.lab.demo import main as demo

    return demo()


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
    server.add_argument("--grpc-listen",
                        help="controller gRPC (RequestGoalStates) address (default 127.0.0.1:9016)")
    controller = sub.add_parser("controller", help="run a data-plane controller on the database")
    controller.add_argument("--db-url")
    controller.add_argument("--grpc-listen", help="gRPC address (default 127.0.0.1:9016)")
    controller.set_defaults(func=_controller)
    db = sub.add_parser("db-upgrade", help="migrate the database to the newest schema")
    db.add_argument("--db-url")
    db.set_defaults(func=_db_upgrade)
    agent = sub.add_parser("agent", help="run a host agent (GoalStateProvisioner gRPC server)")
    agent.add_argument("--listen", default="0.0.0.0:50001", help="gRPC host:port to serve")
    agent.add_argument("--node-id", required=True)
    agent.add_argument("--node-name", help="name ports bind to (default: the node id)")
    agent.add_argument("--local-ip", required=True, help="the host's tunnel endpoint address")
    agent.add_argument("--mac", help="the host's MAC (default: derived from --local-ip)")
    agent.add_argument("--veth", default="eth0")
    agent.add_argument("--host-dvr-mac", help="default: fe:16:11 + the IP's last octets")
    agent.add_argument("--api-url", help="register the node with this API, e.g. http://h:9696")
    agent.add_argument("--controller", help="controller gRPC host:port to ask for the state")
    agent.add_argument("--state-file", help="write what the agent holds to this JSON file "
                       "after each goal state (tests, debugging)")
    agent.add_argument("--dataplane", choices=("linux", "recording"), default="linux",
                       help="linux (default): program this network namespace's bridges, "
                       "VXLAN, workloads, firewall and DHCP; recording: keep it in memory")
    agent.add_argument("--physical-network", action="append", default=[], metavar="NAME=IFACE",
                       help="provider network NAME reaches this host on IFACE (repeatable); "
                       "routers' external gateways plug into a bridge on it")
    agent.set_defaults(func=_agent)
    demo = sub.add_parser("demo", help="as root: two simulated hosts, a network, two VMs and "
                          "a ping between them, explained step by step; then clean up")
    demo.set_defaults(func=_demo)
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
    if getattr(args, "grpc_listen", None):
        overrides["dpm__grpc_listen"] = args.grpc_listen
    settings = load(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin otherwise
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
