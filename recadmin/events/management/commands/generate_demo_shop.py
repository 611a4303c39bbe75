"""manage.py generate_demo_shop [--items 2000] [--customers 1000] [--events 50000] [--seed 42]

A seeded synthetic shop (see recadmin/events/demo.py for the structure it has). Idempotent for a
given seed: event ids are deterministic, so a second run stores nothing new.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from recadmin.events.demo import demo_shop_build
from recadmin.events.importers import dataset_load


class Command(BaseCommand):
    help = (
        "Generate a synthetic shop with learnable structure: categories, brands, prices, stock, customers with "
        "category/brand/price preferences, and sessions running view -> click -> add_to_cart -> purchase."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--items", type=int, default=2000)
        parser.add_argument("--customers", type=int, default=1000)
        parser.add_argument("--events", type=int, default=50_000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--prefix", default="demo-", help="Prefix of every shop id and category slug.")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--no-history", action="store_true", help="Do not fill the recent-history cache.")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("items", "customers", "events"):
            if options[name] < 1:
                self.stderr.write(f"--{name} must be at least 1")
                return
        started = time.perf_counter()
        dataset = demo_shop_build(
            n_items=options["items"],
            n_customers=options["customers"],
            n_events=options["events"],
            seed=options["seed"],
            prefix=options["prefix"],
        )
        bar = tqdm(total=dataset.event_count, unit="event", desc="demo shop", disable=options["no_progress"])
        stats = dataset_load(dataset, progress=bar.update, record_history=not options["no_history"], chunk_size=10_000)
        bar.close()
        self.stdout.write(
            f"demo shop: {stats.items_created} items, {stats.customers_created} customers, {stats.categories} "
            f"categories created; {stats.events_stored} events stored, {stats.events_duplicate} duplicates skipped; "
            f"{time.perf_counter() - started:.1f} s"
        )
