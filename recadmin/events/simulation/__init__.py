"""Simulated visitors of the demo shop, using recadmin through its public HTTP API only.

visitors: a visitor's tastes (from the demo shop generator) and decisions; client: the paced,
bounded, loopback-only HTTP client; runner: visits end to end; report: the counts of a run.
"""

from __future__ import annotations

from recadmin.events.simulation.client import ApiClient, SimulationError, check_url, is_loopback_url
from recadmin.events.simulation.report import SimulationReport
from recadmin.events.simulation.runner import Decision, TrafficSimulator

__all__ = [
    "ApiClient",
    "Decision",
    "SimulationError",
    "SimulationReport",
    "TrafficSimulator",
    "check_url",
    "is_loopback_url",
]
