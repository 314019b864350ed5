"""``alcor demo`` end to end, as a newcomer runs it: it exits 0, says its ping worked, shows
both VMs ACTIVE, and leaves no namespace, interface or process of its own behind."""

from __future__ import annotations

import subprocess

from alcor.lab.demo import PING_WORKED, PREFIX
from alcor.lab.topology import STATE_ROOT, netns_names, python_command, root_links


def test_the_demo_shows_a_ping_between_two_vms_and_cleans_up() -> None:
    done = subprocess.run(python_command("demo"), capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert PING_WORKED in output, output
    assert output.count("status ACTIVE") == 2, output
    assert "Done: nothing of the demo is left" in output
    demo_id = next(line.split("namespace ")[1].split("-h1")[0] for line in output.splitlines()
                   if line.strip().startswith("host-1: namespace"))
    assert demo_id.startswith(PREFIX)
    assert not [n for n in netns_names() if n.startswith(demo_id)]
    assert demo_id not in root_links()
    assert not (STATE_ROOT / demo_id).exists()
