"""What a training run's stages report through and hand on: the progress reporter (throttled writes
to the run's row, the caller's callback, cancellation), the stage errors and the training outcome.
Below the pipeline and the trainers, which all use them."""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.utils import timezone

from recadmin.modelops.models import TrainingRun, TrainingRunStatus, TrainingStage

logger = logging.getLogger(__name__)

_LOG_LINES = 60
_WRITE_EVERY = 1.0  # seconds between progress writes: a bar, not a write per batch

# Where each stage sits on the run's 0-100 progress bar.
STAGE_SPAN: dict[str, tuple[float, float]] = {
    TrainingStage.EXPORTING: (0.0, 8.0),
    TrainingStage.TRAINING: (8.0, 80.0),
    TrainingStage.EVALUATING: (80.0, 86.0),
    TrainingStage.ARCHIVING: (86.0, 92.0),
    TrainingStage.REGISTERING: (92.0, 98.0),
    TrainingStage.PROMOTING: (98.0, 100.0),
}


class RunCancelled(Exception):
    pass


class StageFailed(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


class _LogTail(logging.Handler):
    """Keeps the last lines logged by training and modelops during the run, for the admin."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # logging must never break the run
            self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


class Reporter:
    """Progress of one run: throttled writes to its row, the caller's callback, cancellation."""

    def __init__(self, run: TrainingRun, callback: Callable[[float, str], None] | None) -> None:
        self.run = run
        self.callback = callback
        self.stage_key: str = TrainingStage.EXPORTING
        self.percent = 0.0
        self.text = ""
        self.tail = _LogTail()
        self._last_write = 0.0

    def log(self, message: str, *args: Any) -> None:
        logger.info(message, *args)

    def stage(self, key: str, text: str | None = None) -> None:
        self.stage_key = key
        low, _ = STAGE_SPAN[key]
        self.update(low, text or TrainingStage(key).label, force=True)

    def within(self, fraction: float, text: str) -> None:
        """Progress inside the current stage, fraction in [0, 1]."""
        low, high = STAGE_SPAN[self.stage_key]
        fraction = min(1.0, max(0.0, float(fraction)))
        self.update(low + (high - low) * fraction, text)

    def update(self, percent: float, text: str, *, force: bool = False) -> None:
        self.percent = max(self.percent, min(100.0, percent))
        self.text = text
        if self.callback is not None:
            self.callback(self.percent, text)
        now = time.monotonic()
        if not force and now - self._last_write < _WRITE_EVERY:
            return
        self._last_write = now
        self.flush()

    def flush(self) -> None:
        # A filtered update, so a cancel written by the admin meanwhile is seen and not overwritten.
        updated = TrainingRun.objects.filter(pk=self.run.pk, status=TrainingRunStatus.RUNNING).update(
            progress=round(self.percent, 1),
            stage=self.text[:200],
            log_tail=self.tail.text(),
            current_stage=self.stage_key,
            heartbeat_at=timezone.now(),
        )
        if not updated:
            status = TrainingRun.objects.filter(pk=self.run.pk).values_list("status", flat=True).first()
            if status == TrainingRunStatus.CANCELLED:
                raise RunCancelled()


@dataclass
class TrainOutcome:
    """What the training step hands to archiving and the registry."""

    checkpoint_dir: Path
    kind: str
    params: dict[str, Any]
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    num_events: int
    num_users: int
    num_items: int
    extra: dict[str, Any] = field(default_factory=dict)
