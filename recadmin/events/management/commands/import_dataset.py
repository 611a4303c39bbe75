"""manage.py import_dataset {beauty,movielens,csv} --path DIR

Load a public dataset (or your own CSV export) into the catalog and the event log. The formats
are described in recadmin/events/importers.py and in `--help`. Idempotent: run it twice and the
second run stores nothing new.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recadmin.events import importers

HELP = """Import a dataset into the catalog and the event log. Idempotent.

beauty     S3-Rec sequence format: DIR holds Beauty.txt ("user item item ...", oldest first) and
           Beauty_item2attributes.json. One `purchase` event per item, synthetic timestamps one
           minute apart in file order from 2014-01-01 UTC. Attribute ids are split into a brand
           (the first id when it never appears later in any list) and a category tree (parents by
           majority over the lists); all ids stay on the item as attributes {"attrs": [...]}.
movielens  MovieLens 100K: DIR holds u.data (rating events, real timestamps), u.item (titles;
           genres as categories, the first genre being the item's), u.genre, u.user (attributes).
csv        DIR holds items.csv and events.csv (customers.csv optional), with headers:
             items.csv     shop_id,title,category,brand,price,currency,stock_quantity,in_stock,
                           is_active,attributes   (category: a slug path like beauty/hair-care;
                           attributes: a JSON object; only shop_id is required)
             events.csv    customer,item,type,occurred_at,value,scene,context,recommendation_id,
                           event_id   (customer, item, type required; occurred_at ISO 8601 or
                           unix seconds; validated like the API: bad rows are reported, not fatal)
             customers.csv shop_id,attributes
Ids get a prefix (--id-prefix, default "beauty:" / "ml100k:", none for csv) so datasets can
share one database."""


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        from argparse import RawDescriptionHelpFormatter

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("format", choices=["beauty", "movielens", "csv"])
        parser.add_argument("--path", type=Path, help="Directory of the dataset (default: ../shared/data/<dataset>).")
        parser.add_argument("--id-prefix", default=None, help="Prefix for customer and item shop ids.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        parser.add_argument("--no-history", action="store_true", help="Do not fill the recent-history cache.")

    def handle(self, *args: Any, **options: Any) -> None:
        fmt = options["format"]
        path = options["path"] or _default_path(fmt)
        if path is None or not path.exists():
            raise CommandError(f"Dataset directory not found: {path}. Pass --path.")
        started = time.perf_counter()
        if fmt == "beauty":
            prefix = "beauty:" if options["id_prefix"] is None else options["id_prefix"]
            dataset = importers.read_beauty(path, prefix=prefix)
        elif fmt == "movielens":
            prefix = "ml100k:" if options["id_prefix"] is None else options["id_prefix"]
            dataset = importers.read_movielens(path, prefix=prefix)
        else:
            for required in ("items.csv", "events.csv"):
                if not (path / required).exists():
                    raise CommandError(f"{path / required} not found.")
            dataset = importers.read_csv_pair(path)
        bar = tqdm(total=dataset.event_count, unit="event", desc=fmt, disable=options["no_progress"])
        stats = importers.dataset_load(dataset, progress=bar.update, record_history=not options["no_history"])
        bar.close()
        elapsed = time.perf_counter() - started
        self.stdout.write(
            f"{fmt}: {stats.items_created} items, {stats.customers_created} customers, {stats.categories} categories "
            f"created; {stats.events_stored} events stored, {stats.events_duplicate} duplicates skipped, "
            f"{stats.error_count} rows rejected; {elapsed:.1f} s"
        )
        for error in stats.errors[:20]:
            self.stderr.write(f"  rejected {error}")


def _default_path(fmt: str) -> Path | None:
    # ../shared/data beside the checkout, where the project keeps public datasets.
    base = Path(__file__).resolve().parents[4].parent / "shared" / "data"
    return {"beauty": base / "amazon-beauty", "movielens": base / "ml-100k"}.get(fmt)
