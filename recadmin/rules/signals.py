"""Invalidate the cached rule sets on every change, whichever way it is made (services, admin,
shell, a data migration): services bump the version too, signals catch the rest."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from recadmin.rules.models import BusinessRule, Scene
from recadmin.rules.selectors import rules_cache_bump


@receiver(post_save, sender=Scene, dispatch_uid="rules_scene_saved")
@receiver(post_delete, sender=Scene, dispatch_uid="rules_scene_deleted")
@receiver(post_save, sender=BusinessRule, dispatch_uid="rules_rule_saved")
@receiver(post_delete, sender=BusinessRule, dispatch_uid="rules_rule_deleted")
def _on_change(**kwargs: Any) -> None:
    rules_cache_bump()


@receiver(m2m_changed, sender=BusinessRule.scenes.through, dispatch_uid="rules_rule_scenes")
@receiver(m2m_changed, sender=BusinessRule.pinned_items.through, dispatch_uid="rules_rule_items")
def _on_m2m_change(action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        rules_cache_bump()
