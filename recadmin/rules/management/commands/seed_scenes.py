"""manage.py seed_scenes: create the standard scenes (home, product_detail, cart, email).

Idempotent: scenes that exist are left as merchandisers configured them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from recadmin.rules.services import scene_seed_defaults


class Command(BaseCommand):
    help = "Create the standard scenes (home, product_detail, cart, email) with sensible defaults."

    def handle(self, *args: Any, **options: Any) -> None:
        for scene, created in scene_seed_defaults():
            mmr = f"{scene.mmr_lambda:.2f}" if scene.mmr_enabled else "off"
            state = "created" if created else "exists, left unchanged"
            self.stdout.write(
                f"{scene.slug:<15} {state:<24} n={scene.default_n} k={scene.candidate_multiplier}xn "
                f"cap={scene.max_per_category or '-'} mmr={mmr} "
                f"fallback={scene.fallback}"
            )
