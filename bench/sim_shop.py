"""The simulated shop in one process, for the ranker's benchmarks (bench/ranker.py --source simulator,
bench/experiment_sim.py --in-process).

    with SimulatedShop.open(database_url=..., workdir=...) as shop:   # starts a TorchServe
        shop.reset(shop_seed=7, items=600, customers=400, events=20000)  # empty DB, demo shop, scenes
        shop.train("itemknn")                                            # the retrieval model, served
        report = shop.simulate(seed=1, requests=3000)                   # visitors through the API
        table = shop.impressions()                                       # the ranker's training data

What is real: the database (its own, flushed by reset), the demo shop (recadmin.events.demo), the
training pipeline (training_run_execute: export, fit, .mar, register, gate, promote), a real
TorchServe on free loopback ports (killed on close), the serving path and the public API (the
`/api/v1/...` views through Django's test client: the same middleware, authentication and
serializers, no HTTP socket), the simulator's visitors (recadmin.events.simulation: the same
TrafficSimulator that `manage.py simulate_traffic` runs, with an in-process transport), the metrics
refresh (served-log drain, attribution, rollups) and the impressions export.
What differs from production: no gunicorn and no Celery worker (tasks run eagerly, without
REDIS_URL), and the simulated traffic is not paced (as fast as one process serves it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def django_setup(database_url: str | None) -> None:
    """Django on the given database, tasks in-process (no broker), before any recadmin import."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    # The bench's own process: tasks run eagerly and the cache is process-local (see settings).
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recadmin.settings")
    os.environ.setdefault("TRAINING_IN_SUBPROCESS", "false")
    import django

    django.setup()


class InProcessApiClient:
    """The simulator's ApiClient with Django's test client as transport (no server, no pacing)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # built lazily: Django must be set up first
        from django.test import Client

        from recadmin.events.simulation.client import ApiClient

        class _Client(ApiClient):
            def __init__(self, *, key: str, max_requests: int) -> None:
                super().__init__(url="http://127.0.0.1", key=key, rate=1e9, seconds=1e9, max_requests=max_requests)
                self._django = Client(HTTP_AUTHORIZATION=f"Bearer {key}", raise_request_exception=False)

            def request(
                self,
                method: str,
                path: str,
                *,
                params: dict[str, Any] | None = None,
                json: Any = None,
                final: bool = False,
            ) -> Any:
                self._take_slot(final=final)
                if method == "GET":
                    response = self._django.get(path, params or {})
                else:
                    response = self._django.post(path, data=json, content_type="application/json")
                with self._lock:
                    self.statuses[str(response.status_code)] += 1
                return response

            def health(self) -> bool:
                return True

        return _Client(*args, **kwargs)


@dataclass
class ShopShape:
    seed: int = 7
    items: int = 600
    customers: int = 400
    events: int = 20000
    prefix: str = "demo-"


class SimulatedShop:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.shape = ShopShape()
        self.key = ""
        self._torchserve: Any = None
        self._config: Any = None

    @classmethod
    @contextmanager
    def open(cls, *, database_url: str | None, workdir: Path) -> Iterator[SimulatedShop]:
        django_setup(database_url)
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        shop = cls(workdir)
        shop._start_torchserve()
        try:
            yield shop
        finally:
            shop.close()

    # --- TorchServe ------------------------------------------------------------------------------

    def _start_torchserve(self) -> None:
        from django.conf import settings

        from recadmin.modelops.torchserve import config_on_free_ports, torchserve_start

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "model_store").mkdir(exist_ok=True)
        self._config = config_on_free_ports(
            self.workdir / "run", self.workdir / "model_store", token_auth=False, timeout=10.0,
            register_timeout=180.0, retries=1, backoff=0.1,
        )  # fmt: skip
        for name, value in self._config.as_settings().items():
            setattr(settings, name, value)
        # Two cores shared with other work: a slow answer must not turn into a fallback list.
        settings.SERVING_TIME_BUDGET_MS = 2000
        self._torchserve = torchserve_start(self._config, ready_timeout=120.0, stop_with_parent=True)

    def close(self) -> None:
        from recadmin.modelops.torchserve import torchserve_stop

        if self._config is not None:
            torchserve_stop(self._config, timeout=20.0)
            self._config = None

    def _unregister_all(self) -> None:
        import contextlib

        from recadmin.modelops.torchserve import ModelNotRegistered, get_client

        client = get_client(self._config)
        for summary in client.list_models():
            for info in sorted(client.describe(summary.name), key=lambda v: v.is_default):
                with contextlib.suppress(ModelNotRegistered):
                    client.unregister(info.name, info.version, timeout=30)

    # --- the shop --------------------------------------------------------------------------------

    def reset(self, shape: ShopShape) -> None:
        """An empty database with the demo shop of `shape`, its scenes and a manage+ingest+recommend key."""
        from django.core.cache import cache
        from django.core.management import call_command

        from recadmin.core.services import api_key_create
        from recadmin.events.demo import demo_shop_build
        from recadmin.events.importers import dataset_load

        # One shop per process: serving keeps per-process caches (scene bundles, default models,
        # item metadata) that a flushed database would leave stale; bench scripts run a process per seed.
        self._unregister_all()
        call_command("flush", verbosity=0, interactive=False)
        cache.clear()
        call_command("seed_scenes", verbosity=0)
        dataset_load(
            demo_shop_build(
                n_items=shape.items, n_customers=shape.customers, n_events=shape.events, seed=shape.seed,
                prefix=shape.prefix,
            ),
            record_history=True,
        )  # fmt: skip
        self.shape = shape
        self.key = api_key_create(name="bench", scopes=["ingest", "recommend", "manage"]).raw_key

    def train(self, kind: str, params: dict[str, Any] | None = None) -> Any:
        """A training run through the pipeline (export, fit, archive, register, gate, promote)."""
        from recadmin.modelops.services import training_run_create, training_run_execute

        run = training_run_execute(run=training_run_create(kind=kind, params=params or {}, enqueue=False))
        if run.status != "succeeded":
            raise RuntimeError(f"training run {kind} {run.status}: {run.error}\n{run.log_tail[-3000:]}")
        return run

    def simulate(self, *, seed: int, requests: int) -> Any:
        """`requests` API requests of the demo shop's visitors (seeded), then the metrics refresh."""
        from recadmin.events.demo import demo_shop_world
        from recadmin.events.simulation.runner import TrafficSimulator

        world = demo_shop_world(
            n_items=self.shape.items, n_customers=self.shape.customers, seed=self.shape.seed, prefix=self.shape.prefix
        )
        client = InProcessApiClient(key=self.key, max_requests=requests)
        simulator = TrafficSimulator(world=world, client=client, seed=seed, concurrency=1)
        report = simulator.run()
        self.refresh()
        return report

    def refresh(self) -> None:
        from recadmin.metrics.services import metrics_refresh
        from recadmin.serving.served_log import served_log_backlog, served_log_drain

        while served_log_backlog() > 0 and served_log_drain() > 0:
            pass
        metrics_refresh()

    def impressions(self, **kwargs: Any) -> Any:
        from recadmin.metrics.impressions import impressions_export

        return impressions_export(**kwargs)

    def api(self) -> Any:
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        return client


def main(argv: list[str] | None = None) -> int:
    """One seed's simulated shop: `--impressions OUT` writes the served impressions (pickle) after
    the retrieval-only traffic; `--experiment` then trains the ranker through the pipeline and runs
    an experiment "ranker on" against "ranker off" on more traffic (prints its report as JSON)."""
    import argparse
    import json
    import pickle
    import tempfile
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--seed", type=int, default=1, help="The simulator's seed (and the demo shop's).")
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--retrieval", default="itemknn", help="The retrieval model kind to train and serve.")
    parser.add_argument("--requests", type=int, default=3000, help="API requests of retrieval-only traffic.")
    parser.add_argument("--impressions", type=Path, default=None, help="Write the impressions table here.")
    parser.add_argument("--experiment", action="store_true")
    parser.add_argument("--experiment-requests", type=int, default=4000)
    parser.add_argument("--rank-by", default="clicks", choices=["clicks", "purchases", "revenue"])
    parser.add_argument("--metric", default="ctr", choices=["ctr", "conversion_rate", "revenue_per_customer"])
    parser.add_argument("--ranker-params", default="{}", help="JSON params of the ranker training run.")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(f"[seed {args.seed} {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="recadmin-simshop-") as tmp,
        SimulatedShop.open(database_url=args.database_url, workdir=Path(tmp)) as shop,
    ):
        shop.reset(ShopShape(seed=args.seed, items=args.items, customers=args.customers, events=args.events))
        say("shop loaded; training the retrieval model")
        shop.train(args.retrieval, {"seed": args.seed})
        say(f"simulating {args.requests} requests")
        started = time.monotonic()
        report = shop.simulate(seed=args.seed, requests=args.requests)
        seconds = time.monotonic() - started
        say(f"traffic: {report.requests} requests, {report.impressions} impressions, {report.clicks} clicks, "
            f"{report.purchases} purchases in {seconds:.0f} s; statuses {dict(report.statuses)}")  # fmt: skip
        if args.impressions is not None:
            table = shop.impressions()
            args.impressions.write_bytes(pickle.dumps(table))
            say(f"{len(table)} impressions, {int(table.clicked.sum())} clicked, "
                f"{int(table.purchased.sum())} purchased -> {args.impressions}")  # fmt: skip
        if args.experiment:
            result = _experiment(shop, args, say)
            print(json.dumps(result, indent=1, default=str))
    return 0


def _experiment(shop: SimulatedShop, args: Any, say: Any) -> dict[str, Any]:
    import json

    sys.path.insert(0, str(REPO / "bench"))
    from experiment_sim import experiment_body

    say("training the ranker through the pipeline")
    params = {"seed": args.seed, **json.loads(args.ranker_params)}
    run = shop.train("ranker", params)
    version = run.model_versions.order_by("-version").first()
    say(f"ranker v{version.version} {version.status}; metrics {json.dumps(run.metrics, default=str)[:600]}")
    api = shop.api()
    promoted_by_hand = False
    if version.status != "default":
        # The gate kept it back (it did not beat a baseline on this hold-out): the experiment is
        # about the rank stage online, so promote it by hand, as a merchandiser may, and say so.
        answer = api.post(f"/api/v1/models/{version.name}/{version.version}/promote")
        promoted_by_hand = answer.status_code == 200
        say(f"promoted by hand: {answer.status_code}")
    body = experiment_body("ranker", scene="home", metric=args.metric, rank_by=args.rank_by)
    created = api.post("/api/v1/experiments", body, format="json")
    if created.status_code != 201:
        raise RuntimeError(f"POST /experiments: {created.status_code} {created.json()}")
    experiment_id = created.json()["id"]
    started = api.post(f"/api/v1/experiments/{experiment_id}/start")
    if started.status_code != 200:
        raise RuntimeError(f"start: {started.status_code} {started.json()}")
    say(f"experiment #{experiment_id} running; simulating {args.experiment_requests} requests")
    traffic = shop.simulate(seed=args.seed + 1000, requests=args.experiment_requests)
    report = api.get(f"/api/v1/experiments/{experiment_id}/report").json()
    api.post(f"/api/v1/experiments/{experiment_id}/stop")
    truth = served_truth(shop, experiment_id)
    say(f"expected clicks per page by the simulator's truth: {json.dumps(truth)}")
    return {
        "truth": truth,
        "seed": args.seed,
        "ranker_version": version.version,
        "ranker_status": version.status,
        "promoted_by_hand": promoted_by_hand,
        "ranker_metrics": run.metrics,
        "traffic": traffic.as_dict(),
        "report": report,
    }


def served_truth(shop: SimulatedShop, experiment_id: int) -> dict[str, Any]:
    """Per variant, the expected clicks per page of the lists the experiment actually served, by the
    simulator's true click probabilities (Visitor.affinity with an empty cart, as on the home page,
    and the cascade), for returning customers (a new visitor's taste is not kept): the clicks the
    lists earned, without the noise of the clicks drawn."""
    import random
    import statistics

    from recadmin.events.demo import demo_shop_world
    from recadmin.events.simulation.visitors import CLICK_MAX, EXAMINE_DECAY, ListedItem, Visitor
    from recadmin.serving.models import ServedRecommendation

    world = demo_shop_world(
        n_items=shop.shape.items, n_customers=shop.shape.customers, seed=shop.shape.seed, prefix=shop.shape.prefix
    )
    by_variant: dict[str, list[float]] = {}
    pages = ServedRecommendation.objects.filter(experiment_id=experiment_id, offset=0).select_related("variant")
    for page in pages.iterator():
        taste = world.taste(page.customer_shop_id)
        if taste is None or page.variant is None:
            continue
        visitor = Visitor(customer=taste.customer, taste=taste, rng=random.Random(0), world=world)
        reach, clicks = 1.0, 0.0
        for index, row in enumerate(page.items):
            item = row.get("item") if isinstance(row, dict) else str(row)
            p = CLICK_MAX * visitor.affinity(ListedItem(item=str(item), position=index + 1))
            reach *= EXAMINE_DECAY if index else 1.0
            clicks += reach * p
            reach *= 1.0 - p
        by_variant.setdefault(page.variant.name, []).append(clicks)
    return {
        name: {"pages": len(values), "clicks_per_page": round(statistics.fmean(values), 5)}
        for name, values in sorted(by_variant.items())
        if values
    }


if __name__ == "__main__":
    raise SystemExit(main())
