from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

# "<requests>/<period>": period s, sec, second, m, min, minute, h, hour, d, day (as DRF's throttles).
RATE_LIMIT_PATTERN = r"^\s*\d+\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$"


class ApiScope(models.TextChoices):
    INGEST = "ingest", "Ingest (events, items, customers)"
    RECOMMEND = "recommend", "Recommend (read recommendations)"
    MANAGE = "manage", "Manage (rules, scenes, models, training)"


class ApiKey(models.Model):
    """A shop's credential for the API. Only a SHA-256 of the secret is stored; the key itself
    is shown once, when it is created."""

    name = models.CharField(max_length=100, help_text="Who or what uses this key, e.g. 'storefront'.")
    prefix = models.CharField(
        max_length=16, unique=True, editable=False, help_text="The public start of the key, to recognise it in logs."
    )
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of: ingest, recommend, manage.")
    rate_limit = models.CharField(
        max_length=32,
        blank=True,
        default="",
        validators=[RegexValidator(RATE_LIMIT_PATTERN, "A rate like 1000/min (per s, min, hour or day).")],
        help_text="Requests allowed per period, e.g. 1000/min. Empty: the API_KEY_RATE_LIMIT setting.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return self.is_active and scope in (self.scopes or [])
