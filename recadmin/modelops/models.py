"""The model registry: training runs and the model versions they produce.

The database is the registry of record (what was trained, on what, how well, which version is the
default); TorchServe is the runtime. `selectors.model_versions_with_runtime` merges in what
TorchServe actually reports, and `services.models_sync_torchserve` brings a restarted TorchServe
back in line with this table.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from recadmin.core.history import history_user


class ModelKind(models.TextChoices):
    SASREC = "sasrec", "SASRec (sequence Transformer)"
    HYBRID = "hybrid", "Hybrid (SASRec + content expert + EASE; scores new items from their attributes)"
    CF = "cf", "Collaborative filtering"
    ITEMKNN = "itemknn", "Item-to-item kNN"
    POP = "pop", "Popularity"
    RANKER = "ranker", "Ranker (click and purchase probabilities, ESMM)"


class TrainingRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class TrainingStage(models.TextChoices):
    """Pipeline stages, in order. A failed run records the stage it failed in."""

    EXPORTING = "exporting", "exporting events"
    TRAINING = "training", "training"
    EVALUATING = "evaluating", "evaluating"
    ARCHIVING = "archiving", "archiving"
    REGISTERING = "registering", "registering"
    PROMOTING = "promoting", "promotion gate"


class TrainingRun(models.Model):
    model_name = models.CharField(
        max_length=100, default="", blank=True, help_text="TorchServe model name; empty means the configured default."
    )
    kind = models.CharField(max_length=20, choices=ModelKind.choices, default=ModelKind.SASREC)
    params = models.JSONField(default=dict, blank=True, help_text="Model hyperparameters (override the defaults).")
    status = models.CharField(
        max_length=20, choices=TrainingRunStatus.choices, default=TrainingRunStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0, help_text="Percent done, 0-100.")
    stage = models.CharField(max_length=200, blank=True, default="", help_text="What the run is doing now.")
    failed_stage = models.CharField(max_length=20, choices=TrainingStage.choices, blank=True, default="")
    log_tail = models.TextField(blank=True, default="", help_text="The last lines of the run's log.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Validation and test metrics, data sizes, timings.")
    error = models.TextField(blank=True, default="")
    gate_decision = models.TextField(
        blank=True, default="", help_text="Why the new version did or did not become the default."
    )
    celery_task_id = models.CharField(max_length=255, blank=True, default="")
    trigger = models.CharField(max_length=20, default="admin", help_text="admin, api, schedule or cli.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Liveness of a running run: its process writes heartbeat_at every TRAINING_HEARTBEAT_SECONDS;
    # the periodic sweep fails a run silent for TRAINING_VISIBILITY_TIMEOUT (its process was killed).
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of the process running it.")
    current_stage = models.CharField(max_length=20, choices=TrainingStage.choices, blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="", help_text="host:pid of the process running it.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Training run #{self.pk} ({self.kind}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {TrainingRunStatus.SUCCEEDED, TrainingRunStatus.FAILED, TrainingRunStatus.CANCELLED}

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class ModelVersionStatus(models.TextChoices):
    BUILT = "built", "Built (archive only)"
    REGISTERED = "registered", "Registered"
    DEFAULT = "default", "Default"
    RETIRED = "retired", "Retired"
    FAILED = "failed", "Failed"


# Versions TorchServe is expected to have loaded (the start-up sync registers these again).
LIVE_STATUSES = (ModelVersionStatus.REGISTERED, ModelVersionStatus.DEFAULT)


class ModelVersion(models.Model):
    name = models.CharField(max_length=100, db_index=True)
    version = models.PositiveIntegerField(help_text="Increasing per name, starting at 1.")
    kind = models.CharField(max_length=20, choices=ModelKind.choices)
    params = models.JSONField(default=dict, blank=True)
    archive_path = models.CharField(max_length=500, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    training_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions"
    )
    valid_metrics = models.JSONField(default=dict, blank=True, help_text="On the validation hold-out.")
    test_metrics = models.JSONField(default=dict, blank=True, help_text="On the test hold-out (the latest events).")
    num_events = models.PositiveBigIntegerField(default=0)
    num_users = models.PositiveIntegerField(default=0)
    num_items = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=20, choices=ModelVersionStatus.choices, default=ModelVersionStatus.BUILT, db_index=True
    )
    workers = models.PositiveSmallIntegerField(default=1, help_text="Workers asked of TorchServe.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    promoted_at = models.DateTimeField(null=True, blank=True, help_text="When it last became the default.")
    rolled_back_at = models.DateTimeField(
        null=True, blank=True, help_text="When a rollback took the default away from it (skipped by later rollbacks)."
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="", help_text="The last thing that happened to it, and why.")

    # Promotions, rollbacks, retirements and edits: who made which version the default, and when.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="modelops_version_unique_per_name"),
            # The serving path asks "which version is the default?"; there must never be two answers.
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(status="default"),
                name="modelops_one_default_per_name",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def ndcg10(self) -> float | None:
        metrics = self.valid_metrics or {}
        value: Any = metrics.get("NDCG@10", metrics.get("ndcg@10"))
        return float(value) if value is not None else None
