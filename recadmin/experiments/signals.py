"""Invalidate the cached running experiments on every change to what runs, whichever way it is made
(services, the admin, a shell): services bump the version too, signals catch the rest. Writes to the
per-customer table do not touch it. A new allocation snapshot also places the customers' first
exposures that fall in its period."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from recadmin.experiments.models import AllocationSnapshot, Experiment, Variant
from recadmin.experiments.selectors import experiments_cache_bump
from recadmin.experiments.services import experiment_first_exposures_rebuild, experiment_first_exposures_reclassify


@receiver(post_save, sender=Experiment, dispatch_uid="experiments_experiment_saved")
@receiver(post_delete, sender=Experiment, dispatch_uid="experiments_experiment_deleted")
@receiver(post_save, sender=Variant, dispatch_uid="experiments_variant_saved")
@receiver(post_delete, sender=Variant, dispatch_uid="experiments_variant_deleted")
@receiver(post_save, sender=AllocationSnapshot, dispatch_uid="experiments_allocation_saved")
@receiver(post_delete, sender=AllocationSnapshot, dispatch_uid="experiments_allocation_deleted")
def _on_change(**kwargs: Any) -> None:
    experiments_cache_bump()


@receiver(m2m_changed, sender=Experiment.scenes.through, dispatch_uid="experiments_experiment_scenes")
def _on_scenes_change(action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        experiments_cache_bump()


@receiver(post_save, sender=AllocationSnapshot, dispatch_uid="experiments_allocation_first_exposures")
def _on_snapshot_saved(instance: AllocationSnapshot, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """A new allocation period places the customers first exposed in it (see
    `services.experiment_first_exposures_reclassify`); a moved one re-places every customer."""
    if raw:
        return
    if created:
        experiment_first_exposures_reclassify(snapshot=instance)
    else:
        experiment_first_exposures_rebuild(experiment=instance.experiment)
