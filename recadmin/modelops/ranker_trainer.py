"""Impressions -> evaluated, checkpointed ranker (kind "ranker"): the ranking stage's half of the
pipeline, beside `trainer` (retrieval). Loaded inside the Celery task only (imports torch).

    outcome = train_ranker(table=impressions, params=run.params, reporter=reporter, workdir=workdir)

Evaluation: on a time-based hold-out of the impressions (the newest 20 %, validation the 10 %
before it) ESMM's click and purchase AUCs against (a) the retrieval score alone and (b) logistic
regression on the same features, each model scoring at the serving position and measured within
each logged position (training.ranker.evaluate.within_group_auc: the position effect, which the
retrieval order carries, counts for no one); the figures go into the version's metrics and the promotion
gate (`ranker_gate_decide`) requires ESMM to beat both. The archived model is then fitted on all
impressions (the newest 10 % early-stopping it) by training.ranker.export.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from recadmin.modelops.models import ModelKind, ModelVersion, TrainingStage
from recadmin.modelops.progress import Reporter, StageFailed, TrainOutcome

logger = logging.getLogger("recadmin.modelops.ranker_trainer")

MIN_IMPRESSIONS = 200
TEST_FRACTION = 0.2
VALID_FRACTION = 0.1
# Keys of params that are the pipeline's, not ESMM's.
_PIPELINE_ONLY = frozenset({"seed", "min_impressions", "impression_days", "workers", "min_events"})


def train_ranker(*, table: Any, params: dict[str, Any], reporter: Reporter, workdir: Path) -> TrainOutcome:
    from training.ranker.evaluate import evaluate_rankers
    from training.ranker.export import train_ranker_checkpoint

    minimum = int(params.get("min_impressions", MIN_IMPRESSIONS))
    if len(table) < minimum:
        raise StageFailed(
            TrainingStage.EXPORTING,
            f"Only {len(table)} served impressions; at least {minimum} are needed to train the ranker "
            "(serve recommendations and let the metrics attribute their clicks first).",
        )
    clicks = int(table.clicked.sum())
    if clicks == 0 or clicks == len(table):
        raise StageFailed(
            TrainingStage.EXPORTING,
            f"{clicks} of {len(table)} impressions were clicked: the ranker needs both clicks and non-clicks.",
        )
    seed = int(params.get("seed", 0))
    esmm_params = {k: v for k, v in params.items() if k not in _PIPELINE_ONLY}

    def progress(fraction: float, text: str, metrics: dict[str, float] | None = None) -> None:
        reporter.within(fraction * 0.5, f"evaluating against the baselines: {text}" if text else "evaluating")

    try:
        evaluation, _, _ = evaluate_rankers(
            table,
            kinds=("esmm", "logreg"),
            params={"esmm": esmm_params},
            seed=seed,
            test_fraction=TEST_FRACTION,
            valid_fraction=VALID_FRACTION,
            progress=progress,
        )
    except ValueError as exc:
        raise StageFailed(TrainingStage.TRAINING, f"Could not evaluate the ranker: {exc}") from exc
    # Within each logged position (the ranker's serving scores, at its one fixed position): the
    # retrieval score set the logged order, so over all positions its AUC is mostly the position
    # effect, which a position-free ranker does not claim (bench/ranker.py --source simulator:
    # retrieval 0.76 over all positions, 0.49 within them). A metric with too few clicks per
    # position to measure (NaN) falls back to all positions at the serving position.
    aucs = {
        name: {
            metric: value if not math.isnan(value) else evaluation.serving_position[name][metric]
            for metric, value in values.items()
        }
        for name, values in evaluation.within_position.items()
    }
    test_metrics = {
        f"{name}_{metric}": round(float(value), 6)
        for name, values in (
            ("ranker", aucs["esmm"]),
            ("logreg", aucs["logreg"]),
            ("retrieval", aucs["retrieval_score"]),
        )
        for metric, value in values.items()
        if not math.isnan(value)
    }
    logger.info("Hold-out AUCs (serving scores, within each logged position): %s", test_metrics)

    def fit_progress(fraction: float, text: str, metrics: dict[str, float] | None = None) -> None:
        reporter.within(0.5 + fraction * 0.5, f"training the ranker: {text}" if text else "training the ranker")

    exported = train_ranker_checkpoint(
        table,
        workdir / "checkpoint",
        kind="esmm",
        params=esmm_params,
        seed=seed,
        valid_fraction=VALID_FRACTION,
        progress=fit_progress,
        extra={"holdout": test_metrics},
    )
    reporter.stage(TrainingStage.EVALUATING, "evaluated")
    valid = {k: round(float(v), 6) for k, v in (exported.report.best_valid or {}).items() if isinstance(v, int | float)}
    return TrainOutcome(
        checkpoint_dir=exported.directory,
        kind=ModelKind.RANKER,
        params=dict(exported.model.params),
        valid_metrics=valid,
        test_metrics=test_metrics,
        num_events=len(table),
        num_users=len(set(table.customer)),
        num_items=len(set(table.item)),
        extra={
            "impressions": len(table),
            "clicks": clicks,
            "purchases": int(table.purchased.sum()),
            "holdout_rows": evaluation.rows,
            "train_seconds": round(exported.seconds, 2),
            "best_epoch": exported.report.best_epoch,
        },
    )


def ranker_gate_decide(*, candidate: ModelVersion, current: ModelVersion | None, tolerance: float) -> tuple[bool, str]:
    """A ranker version becomes the default when, on its time-based hold-out, its click AUC beats
    both logistic regression and the retrieval score (and so does its purchase AUC when both are
    measured), and it is not worse than the current default's click AUC minus the tolerance."""
    m = candidate.test_metrics or {}
    own = m.get("ranker_click_auc")
    if own is None:
        return False, f"v{candidate.version} has no hold-out click AUC; kept registered, not default."
    for metric, label in (("click_auc", "click"), ("purchase_auc", "purchase")):
        mine = m.get(f"ranker_{metric}")
        for baseline, name in (("logreg", "logistic regression"), ("retrieval", "the retrieval score")):
            theirs = m.get(f"{baseline}_{metric}")
            if mine is None or theirs is None:
                continue
            if mine <= theirs:
                return False, (
                    f"Kept registered, not default: hold-out {label} AUC {mine:.4f} does not beat {name}'s "
                    f"{theirs:.4f}. Promote it by hand if you disagree."
                )
    beats = f"hold-out click AUC {own:.4f} beats logistic regression and the retrieval score"
    if current is None:
        return True, f"v{candidate.version} is the first version of '{candidate.name}' and its {beats}."
    old = (current.test_metrics or {}).get("ranker_click_auc")
    if old is not None and own < old - tolerance:
        return False, (
            f"Kept registered, not default: {beats}, but is below v{current.version}'s {old:.4f} minus tolerance "
            f"{tolerance:g}. Promote it by hand if you disagree."
        )
    return True, f"Promoted: {beats}" + (f" (v{current.version}: {old:.4f})." if old is not None else ".")
