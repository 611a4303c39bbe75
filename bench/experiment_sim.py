"""An experiment on simulated traffic, end to end through the public API (issue 9 §5, §6).

Against a running recadmin (e.g. `manage.py quickstart`): creates an experiment with
POST /api/v1/experiments, starts it, runs `manage.py simulate_traffic` for --seconds, then prints
GET /api/v1/experiments/<id>/report (per variant counts, lift, 95 % interval, p-value, the
always-valid interval, customers needed, SRM, verdict) and stops the experiment.

    .venv/bin/python bench/experiment_sim.py --key KEY [--url http://127.0.0.1:8000] \
        [--mode model-vs-popular|aa|thompson] [--seconds 300] [--rate 20] [--seed 1] [--scene home]

Modes:
  model-vs-popular  control (the scene as it is: the model first) against strategy ["popular"];
  aa                two identical variants: the verdict must not be a winner;
  thompson          model-vs-popular with allocation "thompson"; prints the allocation history
                    (and the weights in force every --poll seconds during the run);
  ranker            "ranker off" (scene_settings rank_by "") against "ranker on" (rank_by --rank-by):
                    needs a default ranker version (a "ranker" training run on served impressions).
                    bench/sim_shop.py --experiment runs the whole loop in one process.

The key needs the manage, ingest and recommend scopes (quickstart's key has them). The figures
are only meaningful once the served log and the per-customer rollups are up to date on the
server; the report is read once it holds every list the simulator saw in the experiment, or after
--settle seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recadmin.events.simulation.client import SimulationError, check_url  # noqa: E402 - after sys.path

MODES = ("model-vs-popular", "aa", "thompson", "ranker")


def experiment_body(
    mode: str, *, scene: str, metric: str, name: str | None = None, rank_by: str = "clicks"
) -> dict[str, Any]:
    """The POST /api/v1/experiments body of a mode (issue 9 §5's shape)."""
    if mode == "aa":
        variants: list[dict[str, Any]] = [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]
        hypothesis = "Identical variants: no difference expected (checks the statistics and the split)."
    elif mode == "ranker":
        # The control is the scene as it is (its rank_by empty: the retrieval order); the other arm
        # adds the rank stage, ordering the candidates by the default ranker's objective.
        variants = [
            {"name": "ranker-off", "weight": 50, "scene_settings": {"rank_by": ""}},
            {"name": "ranker-on", "weight": 50, "scene_settings": {"rank_by": rank_by}},
        ]
        hypothesis = f"Ordering the candidates by the ranker ({rank_by}) brings more of them than the retrieval order."
    else:
        variants = [{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}]
        hypothesis = "The trained model brings more clicks than trending items."
    body: dict[str, Any] = {
        "name": name or f"sim {mode} {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "hypothesis": hypothesis,
        "scenes": [scene],
        "primary_metric": metric,
        "allocation": "thompson" if mode == "thompson" else "fixed",
        "variants": variants,
    }
    return body


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.base = url.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json()
            except ValueError:
                detail = response.text[:500]
            raise SystemExit(f"{method} {path}: HTTP {response.status_code}: {json.dumps(detail)}")
        return response.json()

    def running_on(self, scene: str) -> list[dict[str, Any]]:
        page = self.call("GET", "/experiments", params={"status": "running", "scene": scene})
        return page["results"] if isinstance(page, dict) else page


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, str(REPO / "manage.py"), "simulate_traffic",
        "--url", args.url, "--key", args.key, "--seconds", str(args.seconds), "--rate", str(args.rate),
        "--seed", str(args.seed), "--shop-seed", str(args.shop_seed), "--shop-items", str(args.shop_items),
        "--shop-customers", str(args.shop_customers), "--json",
    ]  # fmt: skip
    if args.allow_remote:
        command.append("--allow-remote")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # the bar goes to stderr
    if done.returncode != 0:
        raise SystemExit(f"simulate_traffic failed ({done.returncode}): {done.stdout[-2000:]}")
    return json.loads(done.stdout)


def wait_for_report(
    api: Any, experiment_id: int, *, client_variants: dict[str, dict[str, Any]], timeout: float, every: float = 10.0
) -> dict[str, Any]:
    """The report once the server's rollups hold the lists the simulator saw in the experiment's
    variants (the metrics refresh runs every minute), or as it is after `timeout` seconds. The
    simulator counts every variant it was shown, other scenes' experiments too: only this one's count."""
    deadline = time.monotonic() + timeout
    while True:
        report: dict[str, Any] = api.call("GET", f"/experiments/{experiment_id}/report")
        names = {v["name"] for v in report["variants"]}
        expected_lists = sum(int(row.get("lists") or 0) for name, row in client_variants.items() if name in names)
        seen = sum(int(v.get("lists") or 0) for v in report["variants"])
        if seen >= expected_lists or time.monotonic() >= deadline:
            if seen < expected_lists:
                print(f"  (after {timeout:.0f} s the report holds {seen} of {expected_lists} lists)", flush=True)
            return report
        time.sleep(min(every, max(deadline - time.monotonic(), 0.0)))


def poll_weights(api: Api, experiment_id: int, every: float, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.wait(every):
        weights = api.call("GET", f"/experiments/{experiment_id}").get("weights") or {}
        shares = "  ".join(f"{name} {share:.0%}" for name, share in weights.items())
        print(f"  t+{time.monotonic() - started:4.0f}s  weights: {shares}", flush=True)


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def print_report(report: dict[str, Any], *, mode: str) -> None:
    print(f"\nexperiment #{report['id']} {report['name']!r}: {report['status']}, allocation {report['allocation']}, "
          f"primary metric {report['primary_metric']}")  # fmt: skip
    header = f"  {'variant':<10} {'weight':>6} {'customers':>9} {'lists':>7} {'impr.':>8} {'clicks':>7} {'ctr':>7} "
    header += f"{'purch.':>6} {'conv.':>7} {'rev/cust':>8}"
    print(header)
    for v in report["variants"]:
        print(
            f"  {v['name']:<10} {v['weight']:>6.0%} {v['customers']:>9} {v['lists']:>7} {v['impressions']:>8} "
            f"{v['clicks']:>7} {_fmt(v['ctr'], '.2%'):>7} {v['purchases']:>6} {_fmt(v['conversion_rate'], '.2%'):>7} "
            f"{_fmt(v['revenue_per_customer'], '.2f'):>8}"
        )
    for v in report["variants"]:
        if v.get("is_control"):
            continue
        print(
            f"  {v['name']} vs {report.get('control')}: lift {_fmt(v['lift'], '+.1%')} "
            f"[95% CI {_fmt(v['ci_low'], '+.1%')}, {_fmt(v['ci_high'], '+.1%')}], p {_fmt(v['p_value'], '.4g')}; "
            f"always-valid [{_fmt(v['sequential_ci_low'], '+.1%')}, {_fmt(v['sequential_ci_high'], '+.1%')}]; "
            f"customers needed {_fmt(v.get('customers_needed'))}"
        )
    print(f"  SRM p-value {_fmt(report['srm_p_value'], '.4g')}{' (FLAGGED)' if report['srm_flag'] else ''}")
    print(f"  verdict: {report['verdict']}")
    if mode == "thompson" or report["allocation"] == "thompson":
        print("  allocation history:")
        for point in report.get("allocation_history") or []:
            weights = "  ".join(f"{k} {w:.0%}" for k, w in point["weights"].items())
            best = point.get("probability_best") or {}
            best_text = ("  P(best): " + "  ".join(f"{k} {p:.2f}" for k, p in best.items())) if best else ""
            print(f"    {point['at']}  {point['reason']:<12} {weights}{best_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="API key with manage, ingest and recommend scopes.")
    parser.add_argument("--mode", choices=MODES, default="model-vs-popular")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scene", default="home")
    parser.add_argument("--metric", default="ctr", choices=["ctr", "conversion_rate", "revenue_per_customer"])
    parser.add_argument(
        "--rank-by", default="clicks", choices=["clicks", "purchases", "revenue"], help="ranker mode: the objective."
    )
    parser.add_argument("--shop-seed", type=int, default=7, help="The demo shop's seed (quickstart: 7).")
    parser.add_argument("--shop-items", type=int, default=2000)
    parser.add_argument("--shop-customers", type=int, default=1000)
    parser.add_argument(
        "--settle",
        type=float,
        default=150,
        help="At most this many seconds to wait for the server's rollups (every minute) to hold the traffic.",
    )
    parser.add_argument("--poll", type=float, default=30, help="Thompson: print the weights this often.")
    parser.add_argument("--replace", action="store_true", help="Stop an experiment already running on the scene.")
    parser.add_argument("--keep-running", action="store_true", help="Do not stop the experiment at the end.")
    parser.add_argument("--allow-remote", action="store_true")
    parser.add_argument("--json", action="store_true", help="Print the raw report JSON too.")
    args = parser.parse_args()
    try:
        args.url = check_url(args.url, allow_remote=args.allow_remote)
    except SimulationError as exc:
        raise SystemExit(str(exc)) from exc

    api = Api(args.url, args.key)
    running = api.running_on(args.scene)
    if running:
        names = ", ".join(f"#{e['id']} {e['name']!r}" for e in running)
        if not args.replace:
            raise SystemExit(f"Scene {args.scene!r} already runs {names}: pass --replace to stop it first.")
        for experiment in running:
            api.call("POST", f"/experiments/{experiment['id']}/stop")
            print(f"stopped #{experiment['id']}")

    created = api.call(
        "POST",
        "/experiments",
        json=experiment_body(args.mode, scene=args.scene, metric=args.metric, rank_by=args.rank_by),
    )
    experiment_id = created["id"]
    api.call("POST", f"/experiments/{experiment_id}/start")
    print(f"experiment #{experiment_id} {created['name']!r} started on {args.scene}; simulating {args.seconds:.0f} s "
          f"at {args.rate:g} req/s (seed {args.seed})", flush=True)  # fmt: skip

    stop = threading.Event()
    poller = None
    if args.mode == "thompson":
        poller = threading.Thread(target=poll_weights, args=(api, experiment_id, args.poll, stop), daemon=True)
        poller.start()
    try:
        traffic = simulate(args)
    finally:
        stop.set()
        if poller is not None:
            poller.join(timeout=35)
    print(
        f"traffic: {traffic['requests']} requests, {sum(traffic['lists'].values())} lists, {traffic['impressions']} "
        f"impressions, {traffic['clicks']} clicks (CTR {_fmt(traffic['ctr'], '.2%')}), {traffic['purchases']} "
        f"purchases, revenue {traffic['revenue']:.2f}; non-2xx {traffic['non_2xx'] or 'none'}"
    )
    for name, row in (traffic.get("variants") or {}).items():
        print(f"  client-side {name}: {row}")
    report = wait_for_report(api, experiment_id, client_variants=traffic.get("variants") or {}, timeout=args.settle)
    print_report(report, mode=args.mode)
    if args.json:
        print(json.dumps(report, indent=2))
    if not args.keep_running:
        api.call("POST", f"/experiments/{experiment_id}/stop")
        print(f"experiment #{experiment_id} stopped")


if __name__ == "__main__":
    main()
