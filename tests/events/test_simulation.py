"""The traffic simulator (recadmin/events/simulation): against a canned list server (a real local
HTTP server answering the API's shapes, not a mock) for its behaviour, and end to end against the
project's live server with a real API key."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command

from recadmin.events.demo import DemoShopWorld, demo_shop_world
from recadmin.events.simulation import ApiClient, SimulationError, check_url, is_loopback_url
from recadmin.events.simulation.runner import TrafficSimulator
from recadmin.events.simulation.visitors import ListedItem, visitor_for_visit

SHOP = {"n_items": 240, "n_customers": 60, "seed": 5, "prefix": "demo-"}
LIST_N = 10


@pytest.fixture(scope="module")
def world() -> DemoShopWorld:
    return demo_shop_world(**SHOP)


class CannedShop:
    """Answers /recommendations and /items/<id>/similar with lists that depend only on the request
    (random items, so position and taste are independent), and records the events posted."""

    def __init__(self, world: DemoShopWorld, *, reject_price: bool = False, variants: bool = False) -> None:
        self.world = world
        self.variants = variants
        self.reject_price = reject_price
        self.events: list[dict[str, Any]] = []
        self.hits = 0
        self.lock = threading.Lock()
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/healthz":
                    self._answer(200, {"status": "ok"})
                    return
                with shop.lock:
                    shop.hits += 1
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path.startswith("/api/v1/items/"):
                    query["item"] = parts.path.split("/")[4]
                self._answer(200, shop.list_for(query))

            def do_POST(self) -> None:
                rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with shop.lock:
                    shop.hits += 1
                errors = []
                stored = 0
                for index, row in enumerate(rows):
                    if shop.reject_price and "price" in row:
                        errors.append({"index": index, "field": "price", "message": "Unknown field 'price'."})
                        continue
                    stored += 1
                    with shop.lock:
                        shop.events.append(row)
                status = 207 if errors and stored else 400 if errors else 200
                self._answer(status, {"stored": stored, "duplicates": 0, "errors": errors})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def list_for(self, query: dict[str, str]) -> dict[str, Any]:
        key = f"{query.get('scene')}|{query.get('customer')}|{query.get('item')}"
        rng = random.Random(key)
        items = rng.sample(self.world.items, LIST_N)
        return {
            "recommendation_id": f"r-{rng.random():.12f}",
            "scene": query.get("scene", ""),
            "model_version": None,
            "source": "popular",
            "offset": 0,
            "items": [_row(it, p) for p, it in enumerate(items, start=1)],
            # The recommendations API's shape: {"id", "name"} objects (serving.apis), not bare names.
            **(
                {"experiment": {"id": 1, "name": "sim"}, "variant": _variant(query.get("customer") or "")}
                if self.variants
                else {}
            ),
        }


def _variant(customer: str) -> dict[str, Any]:
    return {"id": 2, "name": "b"} if sum(customer.encode()) % 2 else {"id": 1, "name": "a"}


def _row(item: Any, position: int) -> dict[str, Any]:
    return {"item": item.shop_id, "title": "", "category": item.category, "price": item.price, "score": None,
            "position": position, "reasons": []}  # fmt: skip


@pytest.fixture
def canned(world: DemoShopWorld) -> Iterator[CannedShop]:
    shop = CannedShop(world)
    shop.thread.start()
    yield shop
    shop.server.shutdown()
    shop.server.server_close()


def _simulate(world: DemoShopWorld, url: str, *, seed: int = 1, requests: int = 300, **kwargs: Any) -> TrafficSimulator:
    client = ApiClient(url=url, key="k", rate=10_000, seconds=60, max_requests=requests)
    simulator = TrafficSimulator(world=world, client=client, seed=seed, **kwargs)
    simulator.run()
    client.close()
    return simulator


def test_the_same_seed_makes_the_same_visitors_and_decisions(world: DemoShopWorld, canned: CannedShop) -> None:
    first = _simulate(world, canned.url, seed=3)
    first_events = list(canned.events)
    second = _simulate(world, canned.url, seed=3)
    second_events = canned.events[len(first_events) :]
    other = _simulate(world, canned.url, seed=4)
    assert first.decisions == second.decisions
    assert sum(d.action == "click" for d in first.decisions) > 10
    assert first.decisions != other.decisions

    def bar_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "event_id"} for e in events]

    assert bar_ids(first_events) == bar_ids(second_events)  # the same events; ids differ per run
    assert {e["event_id"] for e in first_events}.isdisjoint(e["event_id"] for e in second_events)


def test_concurrent_visits_make_the_same_decisions_per_visit(world: DemoShopWorld, canned: CannedShop) -> None:
    serial = _simulate(world, canned.url, seed=6, requests=200)
    parallel = _simulate(world, canned.url, seed=6, requests=200, concurrency=4)
    assert parallel.report.requests == 200
    assert parallel.report.events_sent == parallel.report.events_stored > 0

    def by_visit(simulator: TrafficSimulator) -> dict[int, list[Any]]:
        grouped: dict[int, list[Any]] = {}
        for decision in simulator.decisions:
            grouped.setdefault(decision.visit, []).append(decision)
        return grouped

    a, b = by_visit(serial), by_visit(parallel)
    # The last visits of each run were cut by the cap at different points.
    common = [v for v in a if v in b and v < min(max(a), max(b)) - 4]
    assert len(common) > 50
    assert all(a[v] == b[v] for v in common)


def test_decisions_do_not_depend_on_other_visits(world: DemoShopWorld) -> None:
    rows = [ListedItem(item=it.shop_id, position=p, category=it.category, price=it.price)
            for p, it in enumerate(world.items[:10], start=1)]  # fmt: skip
    a = visitor_for_visit(world, seed=9, visit=17)
    b = visitor_for_visit(world, seed=9, visit=17)
    assert a.customer == b.customer
    assert [a.scan(rows) for _ in range(20)] == [b.scan(rows) for _ in range(20)]


@pytest.fixture(scope="module")
def long_run(world: DemoShopWorld) -> Iterator[TrafficSimulator]:
    shop = CannedShop(world)
    shop.thread.start()
    try:
        yield _simulate(world, shop.url, requests=1200)
    finally:
        shop.server.shutdown()
        shop.server.server_close()


def test_clicks_fall_with_the_position(long_run: TrafficSimulator) -> None:
    report = long_run.report
    ctr = [report.clicks_by_position[p] / report.impressions_by_position[p] for p in range(1, LIST_N + 1)]
    assert report.clicks > 100
    assert ctr[0] > ctr[2] > ctr[5] > ctr[9] * 0.99
    assert ctr[0] > 3 * ctr[9]


def test_visitors_click_their_preferred_categories_more(world: DemoShopWorld, long_run: TrafficSimulator) -> None:
    simulator = long_run
    shown: Counter[bool] = Counter()
    clicked: Counter[bool] = Counter()
    lists = [d for d in simulator.decisions if d.action == "list"]
    for d in lists:
        taste = world.taste(d.customer)
        if taste is None:
            continue
        for shop_id in d.item.split(","):
            item = world.item(shop_id)
            assert item is not None
            shown[item.category in taste.categories] += 1
    for d in simulator.decisions:
        taste = world.taste(d.customer)
        item = world.item(d.item)
        if d.action == "click" and taste is not None and item is not None:
            clicked[item.category in taste.categories] += 1
    preferred_rate = clicked[True] / shown[True]
    other_rate = clicked[False] / shown[False]
    assert shown[True] > 50
    assert preferred_rate > 4 * other_rate


def test_events_carry_the_list_recommendation_id_and_purchases_a_price(
    world: DemoShopWorld, canned: CannedShop
) -> None:
    simulator = _simulate(world, canned.url, requests=800)
    by_type = Counter(e["type"] for e in canned.events)
    assert by_type["click"] == simulator.report.clicks
    assert by_type["purchase"] == simulator.report.purchases > 0
    for event in canned.events:
        if event["type"] in ("click", "add_to_cart"):
            assert event["recommendation_id"].startswith("r-")
        if event["type"] == "purchase":
            assert event["price"] > 0 and event["value"] >= 1
    assert simulator.report.events_stored == len(canned.events) == simulator.report.events_sent


def test_a_server_refusing_price_gets_purchases_without_it(world: DemoShopWorld) -> None:
    shop = CannedShop(world, reject_price=True)
    shop.thread.start()
    try:
        simulator = _simulate(world, shop.url, requests=800)
    finally:
        shop.server.shutdown()
        shop.server.server_close()
    purchases = [e for e in shop.events if e["type"] == "purchase"]
    assert len(purchases) == simulator.report.purchases > 0  # none lost: resent without the price
    assert all("price" not in e for e in purchases)
    assert simulator.report.price_sent is False
    assert simulator.report.events_rejected == 0


def test_it_counts_per_experiment_variant_when_the_lists_name_one(world: DemoShopWorld) -> None:
    shop = CannedShop(world, variants=True)
    shop.thread.start()
    try:
        report = _simulate(world, shop.url, requests=300).report
    finally:
        shop.server.shutdown()
        shop.server.server_close()
    rows = report.as_dict()["variants"]
    assert set(rows) == {"a", "b"}
    assert sum(r["lists"] for r in rows.values()) == sum(report.lists.values())
    assert sum(r["clicks"] for r in rows.values()) == report.clicks
    assert sum(r["purchases"] for r in rows.values()) == report.purchases
    assert abs(sum(r["revenue"] for r in rows.values()) - report.revenue) < 0.05
    assert "variant a" in report.summary()


def test_it_is_bounded_in_requests_and_time(world: DemoShopWorld, canned: CannedShop) -> None:
    simulator = _simulate(world, canned.url, requests=37, concurrency=3)
    assert simulator.report.requests == canned.hits == 37
    assert simulator.report.stopped_by == "max requests"
    assert simulator.report.events_sent == len(canned.events) > 0  # the last request flushed them

    client = ApiClient(url=canned.url, key="k", rate=40, seconds=1.0, max_requests=10_000)
    timed = TrafficSimulator(world=world, client=client, seed=1)
    report = timed.run()
    assert report.stopped_by == "time"
    assert report.seconds < 1.6
    assert report.requests <= 40 + 1  # the rate, plus the last flush of events


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "https://shop.example.com", "http://0.0.0.0:8000"])
def test_it_refuses_a_non_loopback_url(url: str) -> None:
    assert not is_loopback_url(url)
    with pytest.raises(SimulationError, match="loopback"):
        check_url(url)
    assert check_url(url, allow_remote=True) == url
    with pytest.raises(CommandError, match="loopback"):
        call_command("simulate_traffic", url=url, key="k", seconds=1, no_progress=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8000"])
def test_it_accepts_loopback_urls(url: str) -> None:
    assert is_loopback_url(url)
    assert check_url(url) == url.rstrip("/")


@pytest.mark.django_db(transaction=True)
def test_the_command_sends_events_with_recommendation_ids_to_the_live_server(live_server: Any) -> None:
    from io import StringIO

    from recadmin.core.services import api_key_create
    from recadmin.events.demo import demo_shop_build
    from recadmin.events.importers import dataset_load
    from recadmin.events.models import Event

    call_command("seed_scenes", verbosity=0)
    dataset_load(demo_shop_build(n_events=3000, **SHOP), record_history=True)
    before = Event.objects.count()
    key = api_key_create(name="sim", scopes=["ingest", "recommend"]).raw_key
    out = StringIO()
    call_command(
        "simulate_traffic", url=live_server.url, key=key, seconds=4, rate=30, seed=2, shop_seed=SHOP["seed"],
        shop_items=SHOP["n_items"], shop_customers=SHOP["n_customers"], no_progress=True, json=True, stdout=out,
    )  # fmt: skip
    report = json.loads(out.getvalue())
    new = Event.objects.filter(context__simulated=True)
    assert report["requests"] <= 120
    assert report["lists"].get("home", 0) > 5
    assert report["clicks"] > 0
    assert report["non_2xx"] == {}
    assert new.count() == report["events"]["stored"] == Event.objects.count() - before
    clicks = new.filter(type="click")
    assert clicks.count() == report["clicks"]
    assert not clicks.filter(recommendation_id__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_without_a_key_it_uses_a_temporary_one_and_revokes_it(live_server: Any) -> None:
    from io import StringIO

    from recadmin.core.models import ApiKey

    call_command("seed_scenes", verbosity=0)
    out = StringIO()
    call_command("simulate_traffic", url=live_server.url, seconds=1, rate=5, no_progress=True, stdout=out)
    key = ApiKey.objects.get(name="simulate_traffic (temporary)")
    assert sorted(key.scopes) == ["ingest", "recommend"]
    assert key.revoked_at is not None
    assert "requests" in out.getvalue()


def test_quickstart_background_simulation_sends_traffic_once_the_server_answers(
    world: DemoShopWorld, canned: CannedShop
) -> None:
    from recadmin.events.simulation.background import BackgroundSimulation

    port = canned.server.server_address[1]
    background = BackgroundSimulation(
        host="0.0.0.0", port=port, key="k", seconds=2, rate=20, shop_seed=SHOP["seed"],
        shop_items=SHOP["n_items"], shop_customers=SHOP["n_customers"],
    )  # fmt: skip
    assert background.base == f"http://127.0.0.1:{port}"
    background.start()
    background._thread.join(timeout=30)
    assert background.process is not None
    assert background.process.wait(timeout=120) == 0
    background.stop()
    assert 0 < canned.hits <= 41
    assert any(e["type"] == "click" and e["recommendation_id"] for e in canned.events)


def test_the_world_is_the_shop_the_generator_builds(world: DemoShopWorld) -> None:
    from recadmin.events.demo import demo_shop_build

    dataset = demo_shop_build(n_events=10, **SHOP)
    assert [(i["shop_id"], i["category"], i["brand"], float(i["price"])) for i in dataset.items] == [
        (i.shop_id, i.category, i.brand, i.price) for i in world.items
    ]
    assert [(c["shop_id"], c["attributes"]["budget"]) for c in dataset.customers] == [
        (t.customer, round(t.budget, 2)) for t in world.tastes
    ]
    assert all(1 <= len(t.categories) <= 2 and len(t.brands) == 3 for t in world.tastes)
    assert world.complements["demo-phones"] == "demo-audio"


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["model-vs-popular", "aa", "thompson"])
def test_the_experiment_bench_bodies_are_accepted_by_the_experiments_api(
    mode: str, make_api_client: Any, capsys: Any
) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "experiment_sim.py"
    spec = importlib.util.spec_from_file_location("experiment_sim", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    call_command("seed_scenes", verbosity=0)
    client = make_api_client("manage")
    body = bench.experiment_body(mode, scene="home", metric="ctr")
    created = client.post("/api/v1/experiments", body, format="json")
    assert created.status_code == 201, created.json()
    started = client.post(f"/api/v1/experiments/{created.json()['id']}/start")
    assert started.status_code == 200, started.json()
    assert started.json()["allocation"] == ("thompson" if mode == "thompson" else "fixed")
    report = client.get(f"/api/v1/experiments/{created.json()['id']}/report").json()
    assert [v["name"] for v in report["variants"]] == [v["name"] for v in body["variants"]]
    bench.print_report(report, mode=mode)  # an empty report (no traffic yet) prints too
    assert "verdict:" in capsys.readouterr().out


def test_the_experiment_bench_waits_until_the_report_holds_the_simulated_lists() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "experiment_sim.py"
    spec = importlib.util.spec_from_file_location("experiment_sim", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    class Rollups:  # the server's report, filled by the minute's refresh after a few reads
        calls = 0

        def call(self, method: str, path: str) -> dict[str, Any]:
            self.calls += 1
            lists = [0, 0] if self.calls < 3 else [40, 35]
            return {"variants": [{"name": "a", "lists": lists[0]}, {"name": "b", "lists": lists[1]}]}

    # The simulator also counted another scene's experiment ("control"): not waited for.
    seen = {"a": {"lists": 40}, "b": {"lists": 35}, "control": {"lists": 500}}
    api = Rollups()
    report = bench.wait_for_report(api, 1, client_variants=seen, timeout=5, every=0.01)
    assert api.calls == 3 and sum(v["lists"] for v in report["variants"]) == 75

    late = Rollups()
    more = {"a": {"lists": 400}, "b": {"lists": 599}}
    report = bench.wait_for_report(late, 1, client_variants=more, timeout=0.05, every=0.01)
    assert sum(v["lists"] for v in report["variants"]) < 999  # gives up after the timeout, with what is there
