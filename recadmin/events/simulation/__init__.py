"""Simulated visitors of the demo shop, using recadmin through its public HTTP API only.

visitors: a visitor's tastes (from the demo shop generator) and decisions; client: the paced,
bounded, loopback-only HTTP client; runner: visits end to end; report: the counts of a run;
background: the run quickstart starts. Only the HTTP side is imported here, so that scripts outside
Django (bench/experiment_sim.py) can use it; runner and visitors need the demo shop (Django).
"""

from __future__ import annotations

from recadmin.events.simulation.client import ApiClient, SimulationError, check_url, is_loopback_url
from recadmin.events.simulation.report import SimulationReport

__all__ = [
    "ApiClient",
    "SimulationError",
    "SimulationReport",
    "check_url",
    "is_loopback_url",
]
