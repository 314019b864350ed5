"""The lab cleans up after itself: ``sweep`` removes what a crashed run left (namespaces, the
management link, the processes it started) and spares labs whose owner still runs;
``destroy`` may be called twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alcor.lab.topology import STATE_ROOT, Lab, netns_names, root_links, sweep

CRASHING_RUN = """
import os
from alcor.lab.topology import Lab
lab = Lab("alfs-", ["h"]).create()
lab.add_workload("h", "vm")
sleeper = lab.spawn("sleeper", ["sleep", "300"], netns=lab.hosts["h"].netns)
print(lab.id, sleeper.proc.pid, flush=True)
os._exit(0)
"""


def test_sweep_removes_a_crashed_runs_lab_and_spares_a_live_one() -> None:
    done = subprocess.run([sys.executable, "-c", CRASHING_RUN], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    crashed, sleeper = done.stdout.split()
    assert {f"{crashed}-ul", f"{crashed}-h1", f"{crashed}-vm"} <= set(netns_names())
    assert Path(f"/proc/{sleeper}").exists()
    live = Lab("alfs-", ["h"])
    try:
        live.create()
        removed = sweep("alfs-")
        assert crashed in removed
        assert live.id not in removed
        assert not [n for n in netns_names() if n.startswith(crashed)]
        assert crashed not in root_links()
        assert not (STATE_ROOT / crashed).exists()
        assert not _running(int(sleeper))
        assert f"{live.id}-h1" in netns_names() and live.id in root_links()
    finally:
        live.destroy()
        live.destroy()
    assert not [n for n in netns_names() if n.startswith(live.id)]
    assert live.id not in root_links()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
