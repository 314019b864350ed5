"""The churn soak (``bench/churn_soak.py``), bounded for CI: 30 simulated hosts, 45 seconds of
creates, bulks, deletes and moves with late registrations and agent restarts; no invariant
violation while it runs and every agent holding exactly its compiled goal state at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ("--hosts", "30", "--minutes", "0.75", "--seed", "7", "--quiet-timeout", "20",
        "--restart-every", "10")


@pytest.mark.timeout(150)
def test_a_bounded_churn_soak_has_no_violation_and_every_host_converges() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.churn_soak", *ARGS], cwd=ROOT,
                          capture_output=True, text=True, timeout=140, check=False)
    lines = proc.stdout.splitlines()
    report = "\n".join(lines[-60:]) + ("\n" + proc.stderr[-3000:] if proc.stderr else "")
    summaries = [line for line in lines if line.startswith("summary: ")]
    assert summaries, f"the soak printed no summary (exit {proc.returncode}):\n{report}"
    summary = json.loads(summaries[-1].removeprefix("summary: "))
    assert summary["requests"] > 200, f"too little churn:\n{report}"
    assert summary["violations"] == 0, f"invariant violations:\n{report}"
    assert summary["quiet"], f"never quiet after the churn:\n{report}"
    assert summary["mismatches"] == 0, f"agents differ from their goal states:\n{report}"
    assert proc.returncode == 0, report
