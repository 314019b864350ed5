"""The data-plane manager's metrics: the commit-to-acknowledgement histogram of port changes
and the push, failure and outbox counters, rendered as Prometheus text for ``GET /metrics``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class Metrics:
    """The data-plane manager's counters and the commit-to-acknowledgement histogram."""

    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0
    pushes: int = 0
    push_failures: int = 0
    resource_failures: int = 0
    outbox_claimed: int = 0
    ports_active: int = 0
    ports_error: int = 0
    deltas: int = 0
    deltas_refused: int = 0

    def observe_latency(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1

    def render(self, gauges: Mapping[str, float] | None = None) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        name = "alcor_port_provisioning_seconds"
        lines = [f"# HELP {name} Port change commit to acknowledgement by every host.",
                 f"# TYPE {name} histogram"]
        for bound, count in zip(LATENCY_BUCKETS, self.latency_buckets, strict=True):
            lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
        lines += [f'{name}_bucket{{le="+Inf"}} {self.latency_count}',
                  f"{name}_sum {_number(self.latency_sum)}",
                  f"{name}_count {self.latency_count}"]
        for counter, help_text, value in (
            ("alcor_goal_state_pushes_total", "Goal states pushed to host agents.",
             self.pushes),
            ("alcor_goal_state_push_failures_total",
             "Pushes that did not reach the agent or got no reply.", self.push_failures),
            ("alcor_resource_failures_total",
             "Resources an agent reported FAILURE or INVALID_ARG for.", self.resource_failures),
            ("alcor_outbox_claimed_total", "Outbox change records consumed.",
             self.outbox_claimed),
            ("alcor_ports_active_total", "Port revisions that became ACTIVE.",
             self.ports_active),
            ("alcor_ports_error_total", "Port revisions set ERROR by their host.",
             self.ports_error),
            ("alcor_goal_state_deltas_total",
             "Pushes that were deltas (neighbour entries only) and were applied.", self.deltas),
            ("alcor_goal_state_deltas_refused_total",
             "Deltas an agent refused as not applying to what it holds (sent again in full).",
             self.deltas_refused),
        ):
            lines += [f"# HELP {counter} {help_text}", f"# TYPE {counter} counter",
                      f"{counter} {value}"]
        for gauge, level in sorted((gauges or {}).items()):
            lines += [f"# TYPE {gauge} gauge", f"{gauge} {_number(level)}"]
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))
