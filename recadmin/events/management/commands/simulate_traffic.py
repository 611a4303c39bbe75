"""manage.py simulate_traffic --seconds 60 --rate 20 --seed 1 [--url URL --key KEY]

Visitors of the demo shop (recadmin/events/demo.py: their true tastes are the generator's) use a
running recadmin through its HTTP API: home, product page and cart lists, clicks with a position
bias, add-to-carts and purchases, sent as events with the list's recommendation_id. See
recadmin/events/simulation/. Without --key a temporary API key (ingest, recommend) is created in
this instance's database and revoked at the end.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recadmin.events.demo import DemoShopWorld, demo_shop_world
from recadmin.events.simulation import ApiClient, SimulationError, SimulationReport
from recadmin.events.simulation.runner import TrafficSimulator

DEFAULT_URL = "http://127.0.0.1:8000"
# The shop `manage.py quickstart` generates (its --seed default is 7).
DEFAULT_SHOP_SEED = 7


class Command(BaseCommand):
    help = (
        "Simulate visitors of the demo shop against a running recadmin over HTTP (loopback only): lists, "
        "clicks with position bias, add-to-carts, purchases, events with recommendation ids; prints a summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seconds", type=float, default=60.0, help="Run at most this long (default 60).")
        parser.add_argument("--rate", type=float, default=20.0, help="Requests per second at most (default 20).")
        parser.add_argument("--seed", type=int, default=1, help="Same seed, same visitors and decisions.")
        parser.add_argument("--url", default=DEFAULT_URL, help="Base URL of recadmin (default %(default)s).")
        parser.add_argument("--key", default=None, help="API key with ingest and recommend scopes (default: a "
                            "temporary one created in this instance's database).")  # fmt: skip
        parser.add_argument(
            "--max-requests", type=int, default=None, help="Request cap (default: seconds x rate, rounded up)."
        )
        parser.add_argument(
            "--allow-remote", action="store_true", help="Allow a non-loopback URL (never a production shop)."
        )
        parser.add_argument(
            "--price",
            choices=["auto", "on", "off"],
            default="auto",
            help="Send a unit `price` on purchases: auto (default) sends it and leaves it out if the server "
            "refuses the field, on always, off never.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help="Visits in flight at once (default 4), so that a slow server still gets --rate; each visit's "
            "decisions depend only on the seed and its lists. 1 also keeps the visits' order.",
        )
        parser.add_argument("--batch-size", type=int, default=50, help="Events per POST /api/v1/events.")
        parser.add_argument("--shop-seed", type=int, default=DEFAULT_SHOP_SEED, help="Seed the demo shop was "
                            "generated with (quickstart: 7, generate_demo_shop: 42).")  # fmt: skip
        parser.add_argument("--shop-items", type=int, default=2000, help="The demo shop's --items.")
        parser.add_argument("--shop-customers", type=int, default=1000, help="The demo shop's --customers.")
        parser.add_argument("--shop-prefix", default="demo-", help="The demo shop's --prefix.")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seconds"] <= 0 or options["rate"] <= 0:
            raise CommandError("--seconds and --rate must be positive.")
        max_requests = options["max_requests"] or math.ceil(options["seconds"] * options["rate"])
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.")
        if max_requests < 1:
            raise CommandError("--max-requests must be at least 1.")
        world = demo_shop_world(
            n_items=options["shop_items"],
            n_customers=options["shop_customers"],
            seed=options["shop_seed"],
            prefix=options["shop_prefix"],
        )
        temporary = None
        key = options["key"]
        if not key:
            temporary = _temporary_key()
            key = temporary.raw_key
        bar: Any = None
        try:
            if not options["url"].strip():
                raise CommandError("--url is empty.")
            bar = tqdm(total=max_requests, unit="req", desc="simulating", disable=options["no_progress"], leave=False)
            client = ApiClient(
                url=options["url"],
                key=key,
                rate=options["rate"],
                seconds=options["seconds"],
                max_requests=max_requests,
                allow_remote=options["allow_remote"],
                on_request=lambda n: bar.update(n - bar.n),
            )
            if not client.health():
                raise CommandError(
                    f"Nothing answers at {client.base}: start recadmin first (manage.py quickstart) or pass --url."
                )
            self._check_shop(world)

            def progress(report: SimulationReport) -> None:
                ctr = f"{report.clicks / report.impressions:.1%}" if report.impressions else "-"
                bar.set_postfix_str(f"visits {report.visits} clicks {report.clicks} CTR {ctr} buys {report.purchases}")

            simulator = TrafficSimulator(
                world=world,
                client=client,
                seed=options["seed"],
                price=options["price"],
                batch_size=options["batch_size"],
                on_progress=progress,
                concurrency=options["concurrency"],
            )
            report = simulator.run()
            client.close()
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
            if temporary is not None:
                _revoke(temporary)
        self.stdout.write(json.dumps(report.as_dict(), indent=2) if options["json"] else report.summary())

    def _check_shop(self, world: DemoShopWorld) -> None:
        """Warn when the catalog this instance holds is not the shop the visitors' tastes describe."""
        try:
            from recadmin.catalog.models import Item

            sample = world.items[:50]
            stored = dict(Item.objects.filter(shop_id__in=[i.shop_id for i in sample]).values_list("shop_id", "brand"))
        except Exception:  # noqa: BLE001 - a check for a warning only (e.g. a remote instance's database)
            return
        if stored and sum(stored.get(i.shop_id) == i.brand for i in sample) < len(sample) // 2:
            self.stderr.write(
                "warning: this catalog does not look like the demo shop of --shop-seed/--shop-items; visitors' "
                "tastes will not match the items (pass the generator's --seed and --items)."
            )


def _temporary_key() -> Any:
    from recadmin.core.services import api_key_create

    return api_key_create(name="simulate_traffic (temporary)", scopes=["ingest", "recommend"])


def _revoke(created: Any) -> None:
    from recadmin.core.services import api_key_revoke

    api_key_revoke(api_key=created.api_key)
