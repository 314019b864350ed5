"""Moves SQLite's WAL checkpoints off the request path.

By default the commit that pushes the write-ahead log past 1,000 pages runs the checkpoint
itself (copying pages into the database file and syncing it), and the request that happened to
commit waits for it: the p99 spikes of W1 at high concurrency.  Request connections therefore
run with ``wal_autocheckpoint=0`` and this thread checkpoints in PASSIVE mode (never blocks
writers or readers) on its own connection, on the other core, as the log grows.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

LOG = logging.getLogger(__name__)

INTERVAL_S = 0.2
"""How often the log's size is looked at."""
THRESHOLD_BYTES = 4 * 1024 * 1024
"""Checkpoint once the log is this large (about 1,000 pages of 4 KiB)."""
TRUNCATE_BYTES = 64 * 1024 * 1024
"""Past this, truncate the log file after checkpointing (if no reader holds it back)."""


class Checkpointer:
    def __init__(self, database: str) -> None:
        self.database = database
        self.wal = Path(f"{database}-wal")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=30, check_same_thread=True)
        try:
            while not self._stop.wait(INTERVAL_S):
                self._maybe_checkpoint(conn)
            self._checkpoint(conn, "PASSIVE")
        finally:
            conn.close()

    def _maybe_checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            size = self.wal.stat().st_size
        except FileNotFoundError:
            return
        if size >= THRESHOLD_BYTES:
            self._checkpoint(conn, "TRUNCATE" if size >= TRUNCATE_BYTES else "PASSIVE")

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # busy or locked: the next round tries again
            LOG.debug("checkpoint %s skipped: %s", mode, exc)
