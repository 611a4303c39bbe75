"""The rank stage's objectives and the reason shown for a ranked item, without torch or numpy:
serving (recadmin.serving.services.rank_stage) and training (training.ranker.objective) both use
these words, and serving must not import training.ranker (torch).

reason("clicks", 0.0831)  -> "ranked by predicted clicks 0.083"
"""

from __future__ import annotations

OBJECTIVES = ("clicks", "purchases", "revenue")
_REASON_NAMES = {"clicks": "predicted clicks", "purchases": "predicted purchases", "revenue": "predicted revenue"}


def reason(objective: str, value: float) -> str:
    if objective not in _REASON_NAMES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    shown = f"{value:.2f}" if objective == "revenue" else f"{value:.3f}"
    return f"ranked by {_REASON_NAMES[objective]} {shown}"
