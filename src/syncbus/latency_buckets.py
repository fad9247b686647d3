"""The histogram buckets of every latency metric of the bus, declared once.

Each hop's latency (publisher, router, subscriber) and the SLA rules that judge it
share these bounds, so a quantile computed from one is comparable with another,
and an SLA target falls on a bound. They resolve 1 ms (a hop on one machine) to
10 s and beyond (a subscriber catching up after an outage).
"""

from __future__ import annotations

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
)
