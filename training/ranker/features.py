"""The ranker's features: typed inputs, a spec with its vocabulary (saved as JSON), and one assembly
function that training and serving share, so the two can never featurise differently.

Inputs:
  CustomerFeatures  activity, recency, category/brand affinity, price sensitivity (from their events)
  ItemFeatures      category, brand, price, popularity, age, stock
  ContextFeatures   scene, hour, weekday, device
  per candidate     the retrieval score and source, and the position (logged at training time;
                    fixed to `serving_position` when scoring, which removes position bias from the
                    ranking: every candidate is scored as if it were shown at the same place)

An `ImpressionTable` (one row per item shown: customer, item, scene, position, retrieval score,
source, timestamp, clicked, purchased, plus customer and item attribute lookups) becomes a
`FeatureBatch`: categorical ids (N, fields) and standardised numbers (N, numeric), with labels.
Imports numpy, torch and the standard library only (the TorchServe worker uses this module).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

#: Categorical fields, in column order. Id 0 of every field is "unknown / not seen in training".
CATEGORICAL_FIELDS = (
    "item_category",
    "item_brand",
    "price_band",
    "scene",
    "hour",
    "weekday",
    "device",
    "source",
    "position",
)
#: Numeric fields, in column order; standardised with the training rows' mean and deviation.
NUMERIC_FIELDS = (
    "customer_activity",  # log1p(events in the activity window)
    "customer_recency",  # log1p(days since the last event)
    "customer_price_sensitivity",
    "item_log_price",
    "item_popularity",  # log1p(events)
    "item_age",  # log1p(days since the item was added)
    "item_stock",  # log1p(units)
    "item_in_stock",
    "category_affinity",  # the customer's affinity for this candidate's category
    "brand_affinity",
    "price_vs_sensitivity",  # sensitivity x (log price - the category's median log price)
    "retrieval_score",
)
PRICE_BANDS = 5
MAX_POSITION = 20
FEATURES_FORMAT = 1


@dataclass(frozen=True)
class CustomerFeatures:
    activity: float = 0.0
    recency_days: float = 365.0
    category_affinity: Mapping[str, float] = field(default_factory=dict)
    brand_affinity: Mapping[str, float] = field(default_factory=dict)
    price_sensitivity: float = 0.5

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CustomerFeatures:
        return cls(
            activity=_number(data, "activity", 0.0),
            recency_days=_number(data, "recency_days", 365.0),
            category_affinity=_affinities(data, "category_affinity"),
            brand_affinity=_affinities(data, "brand_affinity"),
            price_sensitivity=_number(data, "price_sensitivity", 0.5),
        )


@dataclass(frozen=True)
class ItemFeatures:
    category: str = ""
    brand: str = ""
    price: float = 0.0
    popularity: float = 0.0
    age_days: float = 0.0
    stock: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemFeatures:
        return cls(
            category=str(data.get("category") or ""),
            brand=str(data.get("brand") or ""),
            price=_number(data, "price", 0.0),
            popularity=_number(data, "popularity", 0.0),
            age_days=_number(data, "age_days", 0.0),
            stock=_number(data, "stock", 0.0),
        )


@dataclass(frozen=True)
class ContextFeatures:
    scene: str = ""
    hour: int = 0
    weekday: int = 0
    device: str = ""

    @classmethod
    def at(cls, timestamp: float, *, scene: str = "", device: str = "") -> ContextFeatures:
        moment = datetime.fromtimestamp(float(timestamp), tz=UTC)
        return cls(scene=scene, hour=moment.hour, weekday=moment.weekday(), device=device)


@dataclass
class ImpressionTable:
    """Logged impressions, one row per item shown, with the attribute lookups of their customers and
    items (customer and item attributes as they were when the impressions were served)."""

    customer: list[str]
    item: list[str]
    scene: list[str]
    position: np.ndarray  # int, 1 = first
    retrieval_score: np.ndarray
    source: list[str]
    timestamp: np.ndarray  # unix seconds
    clicked: np.ndarray  # bool
    purchased: np.ndarray  # bool; a purchase without a click is not a purchase of this impression
    customers: dict[str, CustomerFeatures]
    items: dict[str, ItemFeatures]
    device: list[str] | None = None

    def __len__(self) -> int:
        return len(self.item)

    def subset(self, rows: np.ndarray) -> ImpressionTable:
        def pick(values: list[str]) -> list[str]:
            return [values[int(i)] for i in rows]

        return ImpressionTable(
            customer=pick(self.customer),
            item=pick(self.item),
            scene=pick(self.scene),
            position=self.position[rows],
            retrieval_score=self.retrieval_score[rows],
            source=pick(self.source),
            timestamp=self.timestamp[rows],
            clicked=self.clicked[rows],
            purchased=self.purchased[rows],
            customers=self.customers,
            items=self.items,
            device=pick(self.device) if self.device is not None else None,
        )


@dataclass
class FeatureBatch:
    """Model input. `click` and `purchase` are float labels (purchase implies click)."""

    categorical: torch.Tensor  # (N, len(CATEGORICAL_FIELDS)) long
    numeric: torch.Tensor  # (N, len(NUMERIC_FIELDS)) float32
    click: torch.Tensor | None = None
    purchase: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.categorical.shape[0])

    def subset(self, rows: torch.Tensor | np.ndarray) -> FeatureBatch:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return FeatureBatch(
            categorical=self.categorical[rows],
            numeric=self.numeric[rows],
            click=None if self.click is None else self.click[rows],
            purchase=None if self.purchase is None else self.purchase[rows],
        )


class FeatureSpec:
    """Vocabularies, price bands, category median prices and numeric standardisation learned from
    training rows; the item table (the catalog's attributes at training time) for serving by id."""

    def __init__(
        self,
        *,
        vocab: dict[str, list[str]],
        price_edges: list[float],
        category_log_price: dict[str, float],
        mean: list[float],
        std: list[float],
        serving_position: int = 1,
        max_position: int = MAX_POSITION,
    ) -> None:
        self.vocab = vocab
        self.index = {name: {value: i + 1 for i, value in enumerate(values)} for name, values in vocab.items()}
        self.price_edges = list(price_edges)
        self.category_log_price = dict(category_log_price)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.serving_position = int(serving_position)
        self.max_position = int(max_position)
        self._price_edges_t = torch.tensor(self.price_edges, dtype=torch.float32)
        self._median_log_price = float(np.median(list(category_log_price.values()))) if category_log_price else 0.0

    # ---- sizes -----------------------------------------------------------------------------
    def cardinalities(self) -> list[int]:
        """Embedding rows per categorical field (including the unknown id 0)."""
        sizes = {
            "price_band": PRICE_BANDS,
            "hour": 24,
            "weekday": 7,
            "position": self.max_position,
        }
        return [sizes.get(name, len(self.vocab.get(name, []))) + 1 for name in CATEGORICAL_FIELDS]

    # ---- fitting -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, table: ImpressionTable, *, serving_position: int = 1, max_position: int = MAX_POSITION) -> FeatureSpec:
        items = [table.items.get(i, ItemFeatures()) for i in set(table.item)]
        log_prices = np.array([math.log1p(max(it.price, 0.0)) for it in items] or [0.0])
        edges = np.quantile(log_prices, np.linspace(0, 1, PRICE_BANDS + 1)[1:-1]).tolist()
        by_category: dict[str, list[float]] = {}
        for it in items:
            by_category.setdefault(it.category, []).append(math.log1p(max(it.price, 0.0)))
        vocab = {
            "item_category": sorted({it.category for it in items if it.category}),
            "item_brand": sorted({it.brand for it in items if it.brand}),
            "scene": sorted({s for s in table.scene if s}),
            "device": sorted({d for d in (table.device or []) if d}),
            "source": sorted({s for s in table.source if s}),
        }
        spec = cls(
            vocab=vocab,
            price_edges=edges,
            category_log_price={c: float(np.median(v)) for c, v in by_category.items()},
            mean=[0.0] * len(NUMERIC_FIELDS),
            std=[1.0] * len(NUMERIC_FIELDS),
            serving_position=serving_position,
            max_position=max_position,
        )
        raw = spec._raw_table(table)[1]
        spec.mean = raw.mean(0)
        spec.std = raw.std(0).clamp(min=1e-6)
        return spec

    # ---- encoding ----------------------------------------------------------------------------
    def _id(self, name: str, value: str) -> int:
        return self.index[name].get(value, 0)

    def _ids(self, name: str, values: Sequence[str]) -> torch.Tensor:
        """Ids of many values at once (one dict lookup per distinct value)."""
        uniques, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
        index = self.index[name]
        codes = np.array([index.get(str(u), 0) for u in uniques], dtype=np.int64)
        return torch.from_numpy(codes[inverse.reshape(-1)] if len(values) else np.zeros(0, dtype=np.int64))

    def item_rows(self, items: Sequence[ItemFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per item: categorical ids (category, brand, price band) and raw numbers (log price,
        popularity, age, stock, in stock, log price relative to its category's median)."""
        cats = torch.zeros(len(items), 3, dtype=torch.long)
        nums = torch.zeros(len(items), 6, dtype=torch.float32)
        numbers = []
        for r, it in enumerate(items):
            cats[r, 0] = self._id("item_category", it.category)
            cats[r, 1] = self._id("item_brand", it.brand)
            numbers.append(
                [
                    math.log1p(max(it.popularity, 0.0)),
                    math.log1p(max(it.age_days, 0.0)),
                    math.log1p(max(it.stock, 0.0)),
                    1.0 if it.stock > 0 else 0.0,
                ]
            )
        if numbers:
            nums[:, 1:5] = torch.tensor(numbers)
        prices = torch.tensor([it.price for it in items], dtype=torch.float64)
        medians = self.category_log_prices([it.category for it in items])
        nums[:, 0], cats[:, 2], nums[:, 5] = self.price_columns(prices, medians)
        return cats, nums

    def category_log_prices(self, categories: Sequence[str]) -> torch.Tensor:
        """Per category, its median log price at training time (the overall median for a category
        the spec does not know), float64: the reference of price_columns' relative price."""
        default = self._median_log_price
        return torch.tensor([self.category_log_price.get(c, default) for c in categories], dtype=torch.float64)

    def price_columns(
        self, prices: torch.Tensor, category_log_prices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The price's item features from prices (float64; negative counts as 0) and their
        categories' median log prices (category_log_prices): (log price, price band id, log price
        relative to the category's median) — item_rows' columns, and the ranker handler's when a
        request overrides an item's price."""
        log_price = torch.log1p(prices.clamp(min=0.0))
        as_float = log_price.float()
        band = torch.bucketize(as_float, self._price_edges_t) + 1
        return as_float, band, (log_price - category_log_prices).float()

    def customer_rows(self, customers: Sequence[CustomerFeatures]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per customer: raw numbers (activity, recency, sensitivity) and dense affinity vectors over
        the category and brand vocabularies (column 0 = unknown, always 0)."""
        nums = torch.tensor(
            [
                [math.log1p(max(c.activity, 0.0)), math.log1p(max(c.recency_days, 0.0)), c.price_sensitivity]
                for c in customers
            ],
            dtype=torch.float32,
        ).reshape(len(customers), 3)
        cat_aff = torch.zeros(len(customers), len(self.vocab["item_category"]) + 1)
        brand_aff = torch.zeros(len(customers), len(self.vocab["item_brand"]) + 1)
        for r, c in enumerate(customers):
            for name, value in c.category_affinity.items():
                cat_aff[r, self._id("item_category", name)] = float(value)
            for name, value in c.brand_affinity.items():
                brand_aff[r, self._id("item_brand", name)] = float(value)
        cat_aff[:, 0] = 0.0
        brand_aff[:, 0] = 0.0
        return nums, cat_aff, brand_aff

    def context_ids(self, contexts: Sequence[ContextFeatures]) -> torch.Tensor:
        return torch.tensor(
            [
                [self._id("scene", c.scene), int(c.hour) % 24 + 1, int(c.weekday) % 7 + 1, self._id("device", c.device)]
                for c in contexts
            ],
            dtype=torch.long,
        ).reshape(len(contexts), 4)

    def assemble(
        self,
        *,
        item_cats: torch.Tensor,
        item_nums: torch.Tensor,
        customer_nums: torch.Tensor,
        category_affinity: torch.Tensor,
        brand_affinity: torch.Tensor,
        context_ids: torch.Tensor,
        source_ids: torch.Tensor,
        positions: torch.Tensor,
        retrieval_scores: torch.Tensor,
        standardise: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows aligned on the candidate axis; customer/context arguments may have one row
        (broadcast, as in one request) or one per candidate (training)."""
        n = item_cats.shape[0]
        position_ids = positions.long().clamp(1, self.max_position)
        categorical = torch.cat(
            [
                item_cats,
                context_ids.expand(n, -1),
                source_ids.view(n, 1),
                position_ids.view(n, 1),
            ],
            dim=1,
        )
        cat_aff = category_affinity.expand(n, -1).gather(1, item_cats[:, 0:1])
        brand_aff = brand_affinity.expand(n, -1).gather(1, item_cats[:, 1:2])
        cust = customer_nums.expand(n, -1)
        numeric = torch.cat(
            [
                cust,
                item_nums[:, :5],
                cat_aff,
                brand_aff,
                cust[:, 2:3] * item_nums[:, 5:6],
                retrieval_scores.float().view(n, 1),
            ],
            dim=1,
        )
        if standardise:
            numeric = (numeric - self.mean) / self.std
        return categorical, numeric

    def _raw_table(self, table: ImpressionTable) -> tuple[torch.Tensor, torch.Tensor]:
        item_ids = sorted(set(table.item))
        item_pos = {v: i for i, v in enumerate(item_ids)}
        item_cats, item_nums = self.item_rows([table.items.get(i, ItemFeatures()) for i in item_ids])
        cust_ids = sorted(set(table.customer))
        cust_pos = {v: i for i, v in enumerate(cust_ids)}
        cust_nums, cat_aff, brand_aff = self.customer_rows(
            [table.customers.get(c, CustomerFeatures()) for c in cust_ids]
        )
        ir = torch.tensor([item_pos[i] for i in table.item], dtype=torch.long)
        cr = torch.tensor([cust_pos[c] for c in table.customer], dtype=torch.long)
        # Vectorised ContextFeatures.at: UTC hour and weekday (1970-01-01 was a Thursday, weekday 3).
        seconds = np.floor(np.asarray(table.timestamp, dtype=np.float64)).astype(np.int64)
        hours = torch.from_numpy((seconds // 3600) % 24 + 1)
        weekdays = torch.from_numpy((seconds // 86400 + 3) % 7 + 1)
        devices = table.device or [""] * len(table)
        context_ids = torch.stack(
            [self._ids("scene", table.scene), hours, weekdays, self._ids("device", devices)], dim=1
        )
        return self.assemble(
            item_cats=item_cats[ir],
            item_nums=item_nums[ir],
            customer_nums=cust_nums[cr],
            category_affinity=cat_aff[cr],
            brand_affinity=brand_aff[cr],
            context_ids=context_ids,
            source_ids=self._ids("source", table.source),
            positions=torch.as_tensor(np.asarray(table.position), dtype=torch.long),
            retrieval_scores=torch.as_tensor(np.asarray(table.retrieval_score, dtype=np.float32)),
            standardise=False,
        )

    def transform(self, table: ImpressionTable, *, position: int | None = None) -> FeatureBatch:
        """The table's rows as model input with labels. `position` overrides the logged positions
        (e.g. serving_position, to score as the ranker will at serving)."""
        categorical, numeric = self._raw_table(table)
        if position is not None:
            categorical[:, CATEGORICAL_FIELDS.index("position")] = min(max(int(position), 1), self.max_position)
        clicked = torch.as_tensor(np.asarray(table.clicked, dtype=np.float32))
        purchased = torch.as_tensor(np.asarray(table.purchased, dtype=np.float32)) * clicked
        return FeatureBatch(
            categorical=categorical, numeric=(numeric - self.mean) / self.std, click=clicked, purchase=purchased
        )

    # ---- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FEATURES_FORMAT,
            "categorical_fields": list(CATEGORICAL_FIELDS),
            "numeric_fields": list(NUMERIC_FIELDS),
            "vocab": self.vocab,
            "price_edges": self.price_edges,
            "category_log_price": self.category_log_price,
            "mean": [float(x) for x in self.mean],
            "std": [float(x) for x in self.std],
            "serving_position": self.serving_position,
            "max_position": self.max_position,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        if int(data.get("format_version", 0)) != FEATURES_FORMAT:
            raise ValueError(f"unsupported feature spec format {data.get('format_version')}")
        if list(data["categorical_fields"]) != list(CATEGORICAL_FIELDS) or list(data["numeric_fields"]) != list(
            NUMERIC_FIELDS
        ):
            raise ValueError("the feature spec's fields differ from this code's: retrain the ranker")
        return cls(
            vocab={k: list(v) for k, v in data["vocab"].items()},
            price_edges=list(data["price_edges"]),
            category_log_price=dict(data["category_log_price"]),
            mean=list(data["mean"]),
            std=list(data["std"]),
            serving_position=int(data["serving_position"]),
            max_position=int(data["max_position"]),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))


def items_to_json(items: Mapping[str, ItemFeatures]) -> str:
    return json.dumps({k: asdict(v) for k, v in items.items()}, sort_keys=True)


def items_from_json(text: str) -> dict[str, ItemFeatures]:
    return {k: ItemFeatures.from_dict(v) for k, v in json.loads(text).items()}


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ValueError(f'"{key}" must be a finite number.')
    return float(value)


def _affinities(data: Mapping[str, Any], key: str) -> dict[str, float]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f'"{key}" must be an object of name -> number.')
    out = {}
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(float(weight)):
            raise ValueError(f'"{key}" must be an object of name -> number.')
        out[str(name)] = float(weight)
    return out
