"""Serve Keystone's WSGI application on 127.0.0.1 for tests: run by the Keystone virtualenv's
interpreter (``tests/keystone_cloud.py`` starts it), never imported by the test suite.

    OS_KEYSTONE_CONFIG_FILES=/path/keystone.conf python keystone_wsgi.py PORT

A threaded ``wsgiref`` server: enough for a test's few requests at a time, and it needs
nothing beyond the standard library and Keystone itself.
"""

from __future__ import annotations

import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


def main() -> None:
    port = int(sys.argv[1])
    del sys.argv[1:]  # oslo.config parses the command line when Keystone loads
    del sys.path[0]  # this directory: only the virtualenv's packages
    from keystone.wsgi.api import application  # type: ignore[import-not-found]

    server = make_server("127.0.0.1", port, application, server_class=ThreadingServer,
                         handler_class=QuietHandler)
    print(f"keystone serving on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
