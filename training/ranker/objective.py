"""What a scene's rank stage orders by, and the reason shown for it.

clicks     pCTR
purchases  pCTCVR (click and purchase)
revenue    pCTCVR x price

order, values = rank_by("revenue", pctr=[...], pctcvr=[...], prices=[...])
reason("clicks", 0.0831)  -> "ranked by predicted clicks 0.083"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The objectives and the reason's words live in a torch-free module that serving imports too.
from training.rank_objectives import OBJECTIVES as OBJECTIVES
from training.rank_objectives import reason as reason


def objective_values(
    objective: str, *, pctr: Sequence[float], pctcvr: Sequence[float], prices: Sequence[float] | None = None
) -> np.ndarray:
    if objective == "clicks":
        return np.asarray(pctr, dtype=np.float64)
    if objective == "purchases":
        return np.asarray(pctcvr, dtype=np.float64)
    if objective == "revenue":
        if prices is None:
            raise ValueError('ordering by "revenue" needs the candidates\' prices')
        return np.asarray(pctcvr, dtype=np.float64) * np.maximum(np.asarray(prices, dtype=np.float64), 0.0)
    raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")


def rank_by(
    objective: str, *, pctr: Sequence[float], pctcvr: Sequence[float], prices: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the candidates best first, their objective values in that order); ties keep
    the incoming (retrieval) order."""
    values = objective_values(objective, pctr=pctr, pctcvr=pctcvr, prices=prices)
    order = np.argsort(-values, kind="stable")
    return order, values[order]
