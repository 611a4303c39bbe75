"""What was served: one row per page of a recommendation list.

Rows are written in bulk, off the request path (see `served_log`), and never updated. They carry
what a later click-through report needs: the `recommendation_id` that events echo back, the scene,
the model version (or "fallback" as the source), and every item with its position and score, so
CTR per scene, per model version and per position is one join with `events.Event`.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH, Customer
from recadmin.events.models import RECOMMENDATION_ID_MAX_LENGTH, SCENE_MAX_LENGTH
from recadmin.modelops.models import ModelVersion


class ServedSource(models.TextChoices):
    MODEL = "model", "Model"
    FALLBACK = "fallback", "Fallback"
    POPULAR = "popular", "Popular"


class ServedEndpoint(models.TextChoices):
    RECOMMENDATIONS = "recommendations", "Recommendations"
    SIMILAR = "similar", "Similar items"
    POPULAR = "popular", "Popular"


class ServedRecommendation(models.Model):
    id = models.BigAutoField(primary_key=True)
    recommendation_id = models.CharField(max_length=RECOMMENDATION_ID_MAX_LENGTH)
    # Pages of one list share the recommendation_id; the offset tells them apart.
    offset = models.PositiveIntegerField(default=0)
    endpoint = models.CharField(max_length=20, choices=ServedEndpoint.choices, default=ServedEndpoint.RECOMMENDATIONS)
    # Resolved from customer_shop_id when the log is drained (never on the request path). Unknown
    # customers (cold start) keep only the string.
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    customer_shop_id = models.CharField(max_length=SHOP_ID_MAX_LENGTH, blank=True, default="")
    scene = models.CharField(max_length=SCENE_MAX_LENGTH, blank=True, default="")
    # No database constraint: a version deleted later must not make a buffered insert fail.
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    model_label = models.CharField(max_length=120, blank=True, default="", help_text="name vN, kept if deleted.")
    # The list's source: "model" / "fallback" today; a strategy's candidate source name
    # (similar, complementary, popular, recently_viewed) once strategies fill it.
    source = models.CharField(max_length=20)
    # The strategy that built the list: its sources in chain order, comma-separated ("model,popular").
    strategy = models.CharField(max_length=200, blank=True, default="")
    # The experiment and variant the customer was assigned to (none outside an experiment). No database
    # constraint, as for model_version: a deleted experiment must not make a buffered insert fail.
    experiment = models.ForeignKey(
        "experiments.Experiment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    variant = models.ForeignKey(
        "experiments.Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    fallback_reason = models.CharField(max_length=200, blank=True, default="")
    context_item = models.CharField(max_length=SHOP_ID_MAX_LENGTH, blank=True, default="")
    category = models.CharField(max_length=100, blank=True, default="")
    # [{"item": shop id, "position": absolute position from 0, "score": float, "rules": [rule ids],
    #   "source": the candidate source that produced the item}]
    items = models.JSONField(default=list)
    n_items = models.PositiveSmallIntegerField(default=0, help_text="Impressions in this page.")
    latency_ms = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["recommendation_id", "offset"], name="served_unique_page"),
        ]
        indexes = [
            models.Index(fields=["created_at"], name="served_created"),
            models.Index(fields=["scene", "created_at"], name="served_scene_time"),
            models.Index(fields=["model_version", "created_at"], name="served_version_time"),
            models.Index(fields=["customer_shop_id", "created_at"], name="served_customer_time"),
            models.Index(fields=["experiment", "created_at"], name="served_experiment_time"),
        ]

    def __str__(self) -> str:
        return f"{self.recommendation_id}@{self.offset} ({self.scene or self.endpoint}, {self.source})"
