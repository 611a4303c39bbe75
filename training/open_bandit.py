"""Reader of the Open Bandit Dataset sample that the `obp` package ships (ZOZOTOWN fashion
e-commerce, 10,000 impressions per behaviour policy and campaign, with item positions 1-3 and
clicks), as a ranker ImpressionTable.

The CSVs are located through importlib.util.find_spec("obp") without importing obp (its imports
need packages recadmin does not install, and it declares Python < 3.11); nothing is downloaded.
Install it with `pip install --no-deps --ignore-requires-python obp==0.5.7`.

Mapping to the ranker's features (the data is anonymised: hashed user and item features):
  item            "obd<item_id>"; category = item_feature_1, brand = item_feature_2,
                  price = exp(item_feature_0) (a standardised numeric item feature), in stock
  customer        one per impression (the data has no user ids); the user-item affinities (past
                  clicks per item) give activity (their sum) and category and brand affinity
                  (their shares per category and per brand)
  retrieval score the user's affinity for the shown item
  scene / source  the campaign / the behaviour policy ("random" or "bts"); hour and weekday
                  from the timestamp; position as logged; no purchases (purchase AUC is undefined)
The four hashed user features are not used: the ranker's customer features have no slot for them.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from datetime import datetime
from pathlib import Path

import numpy as np

from training.ranker.features import CustomerFeatures, ImpressionTable, ItemFeatures

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")


class ObdUnavailable(RuntimeError):
    """The obp package (and so its bundled sample) is not installed."""


def open_bandit_directory() -> Path:
    """obp's bundled data directory (…/obp/dataset/obd), found without importing obp."""
    spec = importlib.util.find_spec("obp")
    if spec is None or not spec.submodule_search_locations:
        raise ObdUnavailable(
            "the obp package is not installed (pip install --no-deps --ignore-requires-python obp==0.5.7)"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "obd"
    if not directory.is_dir():
        raise ObdUnavailable(f"obp is installed but ships no sample data at {directory}")
    return directory


def read_open_bandit(*, behavior_policy: str = "random", campaign: str = "all") -> ImpressionTable:
    if behavior_policy not in POLICIES:
        raise ValueError(f"behavior_policy must be one of {POLICIES}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign must be one of {CAMPAIGNS}")
    folder = open_bandit_directory() / behavior_policy / campaign
    log_file, item_file = folder / f"{campaign}.csv", folder / "item_context.csv"
    if not log_file.is_file() or not item_file.is_file():
        raise ObdUnavailable(f"obp's sample lacks {log_file.name} or {item_file.name} in {folder}")

    items: dict[str, ItemFeatures] = {}
    with open(item_file, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            items[f"obd{row['item_id']}"] = ItemFeatures(
                category=row["item_feature_1"],
                brand=row["item_feature_2"],
                price=math.exp(float(row["item_feature_0"])),
                stock=1.0,
            )
    item_keys = sorted(items, key=lambda k: int(k[3:]))
    categories = [items[k].category for k in item_keys]
    brands = [items[k].brand for k in item_keys]

    customer: list[str] = []
    item: list[str] = []
    position: list[int] = []
    score: list[float] = []
    timestamp: list[float] = []
    clicked: list[bool] = []
    customers: dict[str, CustomerFeatures] = {}
    with open(log_file, newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh)):
            affinity = np.array([float(row[f"user-item_affinity_{j}"]) for j in range(len(item_keys))])
            total = float(affinity.sum())
            by_category: dict[str, float] = {}
            by_brand: dict[str, float] = {}
            if total > 0:
                for j in np.flatnonzero(affinity):
                    by_category[categories[j]] = by_category.get(categories[j], 0.0) + affinity[j] / total
                    by_brand[brands[j]] = by_brand.get(brands[j], 0.0) + affinity[j] / total
            key = f"{behavior_policy}-{campaign}-{n}"
            customers[key] = CustomerFeatures(
                activity=total, recency_days=0.0, category_affinity=by_category, brand_affinity=by_brand
            )
            item_id = int(row["item_id"])
            customer.append(key)
            item.append(f"obd{item_id}")
            position.append(int(row["position"]))
            score.append(float(affinity[item_id]))
            timestamp.append(datetime.fromisoformat(row["timestamp"]).timestamp())
            clicked.append(row["click"] == "1")
    n = len(item)
    return ImpressionTable(
        customer=customer,
        item=item,
        scene=[campaign] * n,
        position=np.asarray(position, dtype=np.int64),
        retrieval_score=np.asarray(score, dtype=np.float32),
        source=[behavior_policy] * n,
        timestamp=np.asarray(timestamp, dtype=np.float64),
        clicked=np.asarray(clicked, dtype=bool),
        purchased=np.zeros(n, dtype=bool),
        customers=customers,
        items=items,
    )


def concat_tables(tables: list[ImpressionTable]) -> ImpressionTable:
    """One table from several (e.g. both behaviour policies), customers and items merged."""
    first = tables[0]
    return ImpressionTable(
        customer=[c for t in tables for c in t.customer],
        item=[i for t in tables for i in t.item],
        scene=[s for t in tables for s in t.scene],
        position=np.concatenate([t.position for t in tables]),
        retrieval_score=np.concatenate([t.retrieval_score for t in tables]),
        source=[s for t in tables for s in t.source],
        timestamp=np.concatenate([t.timestamp for t in tables]),
        clicked=np.concatenate([t.clicked for t in tables]),
        purchased=np.concatenate([t.purchased for t in tables]),
        customers={k: v for t in tables for k, v in t.customers.items()},
        items={**first.items, **{k: v for t in tables[1:] for k, v in t.items.items()}},
        device=None,
    )
