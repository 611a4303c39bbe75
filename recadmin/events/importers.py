"""Dataset importers: read a dataset into plain rows, then load them in bulk (COPY on PostgreSQL).

Formats (see `manage.py import_dataset --help`):

* `beauty`: the S3-Rec sequence format. `Beauty.txt` has one line per user,
  `user_id item_id item_id ...` in time order; each becomes one `purchase` event per item (a
  review implies a purchase) with synthetic timestamps one minute apart, numbered in file order
  from 2014-01-01 UTC, so every user's order is kept and no two events share a time.
  `Beauty_item2attributes.json` maps items to attribute ids that encode the brand and the
  category path (names are not published). S3-Rec lists the brand first, then the categories of
  each path, top-down. So: an id that ever appears after the first position is a category; a
  first id that never does is the item's brand. The first category after the brand starts a path;
  each later category's parent is the category before it (by majority over all items), unless it
  is itself a top-level one. The item's category is the deepest category of its first path. All
  ids are also kept on the item as `attributes = {"attrs": [...]}`. Categories are named
  "Beauty attribute <id>" under a root "Beauty"; brands "brand-<id>".
* `movielens`: MovieLens 100K. `u.data` rows become `rating` events (value = the rating, time =
  the real timestamp); `u.item` gives titles, genres as categories under a root "Movies" (the
  item's category is its first genre; all genres, the release date and IMDb URL are attributes);
  `u.user` gives customer attributes (age, gender, occupation, zip).
* `csv`: a documented generic pair, `items.csv` and `events.csv` (and optionally `customers.csv`):

  items.csv:   shop_id,title,category,brand,price,currency,stock_quantity,in_stock,is_active,attributes
               (only shop_id is required; category is a slug path such as `beauty/hair-care/oils`,
               each level created if missing; in_stock/is_active are true/false; attributes is a
               JSON object)
  events.csv:  customer,item,type,occurred_at,value,scene,context,recommendation_id,event_id
               (customer, item and type required; occurred_at ISO 8601 or unix seconds; context a
               JSON object; rows are validated as the API validates them, bad rows are reported)
  customers.csv: shop_id,attributes

Idempotent: items and customers are upserted by shop id, events keyed by event_id (derived
deterministically for the datasets), so importing twice stores nothing twice.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from recadmin.catalog.cache import items_changed
from recadmin.catalog.models import PATH_SEPARATOR, Category, Customer, Item
from recadmin.catalog.services import ITEM_FIELDS, customers_ensure, pg_copy_upsert
from recadmin.core.errors import ValidationError
from recadmin.core.iterables import chunked
from recadmin.events.history import HistoryEvent, event_device, history_record
from recadmin.events.services import EventRow, RowError, event_types, event_validate, events_store

logger = logging.getLogger(__name__)

BEAUTY_EPOCH = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)
EVENT_CHUNK = 50_000


@dataclass
class CategorySpec:
    slug: str
    name: str
    parent: str | None = None


@dataclass
class Dataset:
    name: str
    categories: list[CategorySpec] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    events: Iterable[EventRow] = field(default_factory=list)
    event_count: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # rows rejected while reading


@dataclass
class ImportStats:
    categories: int = 0
    items_created: int = 0
    customers_created: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0


# --- readers ---------------------------------------------------------------------------------------


def read_beauty(path: Path, *, prefix: str = "beauty:", event_type: str = "purchase") -> Dataset:
    sequences = path / "Beauty.txt" if path.is_dir() else path
    attributes_file = sequences.with_name("Beauty_item2attributes.json")
    item_attrs: dict[str, list[int]] = {}
    if attributes_file.exists():
        item_attrs = {k: list(v) for k, v in json.loads(attributes_file.read_text()).items()}
    lines = sequences.read_text().split("\n")

    categories, item_category, item_brand = _beauty_taxonomy(item_attrs, prefix)
    root = slugify(prefix.rstrip(":-_ ")) or "beauty"
    specs = [CategorySpec(slug=root, name=root.title())]
    specs += [CategorySpec(slug=f"{root}-attr-{c}", name=f"Beauty attribute {c}",
                           parent=f"{root}-attr-{p}" if p is not None else root) for c, p in categories]  # fmt: skip

    users: list[str] = []
    item_ids: dict[str, None] = dict.fromkeys(item_attrs)
    parsed: list[tuple[str, list[str]]] = []
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        users.append(parts[0])
        parsed.append((parts[0], parts[1:]))
        item_ids.update(dict.fromkeys(parts[1:]))

    items = []
    for item in item_ids:
        attrs = item_attrs.get(item, [])
        cat = item_category.get(item)
        brand = item_brand.get(item)
        items.append(
            {
                "shop_id": f"{prefix}{item}",
                "title": f"Beauty item {item}",
                "category": f"{root}-attr-{cat}" if cat is not None else root,
                "brand": f"brand-{brand}" if brand is not None else "",
                "attributes": {"attrs": attrs},
            }
        )

    def events() -> Iterator[EventRow]:
        minute = 0
        for index, (user, sequence) in enumerate(parsed):
            for position, item in enumerate(sequence):
                yield EventRow(
                    index=index,
                    customer=f"{prefix}{user}",
                    item=f"{prefix}{item}",
                    type=event_type,
                    value=None,
                    occurred_at=BEAUTY_EPOCH + dt.timedelta(minutes=minute),
                    scene="",
                    context={},
                    recommendation_id=None,
                    event_id=f"{prefix}{user}:{position}",
                )
                minute += 1

    return Dataset(
        name="beauty",
        categories=specs,
        items=items,
        customers=[{"shop_id": f"{prefix}{u}"} for u in users],
        events=events(),
        event_count=sum(len(s) for _, s in parsed),
    )


def _beauty_taxonomy(
    item_attrs: dict[str, list[int]], prefix: str
) -> tuple[list[tuple[int, int | None]], dict[str, int], dict[str, int]]:
    """Split S3-Rec attribute ids into brands and a category tree (see the module docstring).
    Returns ([(category, parent or None)] parents first, item -> category, item -> brand)."""
    later = {a for attrs in item_attrs.values() for a in attrs[1:]}
    split: dict[str, tuple[int | None, list[int]]] = {}
    for item, attrs in item_attrs.items():
        if attrs and attrs[0] not in later:
            split[item] = (attrs[0], attrs[1:])
        else:
            split[item] = (None, list(attrs))
    tops = {cats[0] for _, cats in split.values() if cats}
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    for _, cats in split.values():
        for i in range(1, len(cats)):
            if cats[i] not in tops and cats[i] != cats[i - 1]:
                votes[cats[i]][cats[i - 1]] += 1
    parent: dict[int, int | None] = {c: None for c in tops}
    for child, counter in votes.items():
        parent[child] = counter.most_common(1)[0][0]
    for c in {a for _, cats in split.values() for a in cats}:
        parent.setdefault(c, None)
    # Break any cycle the votes could make: a node whose ancestry loops becomes a top-level one.
    for node in list(parent):
        seen, cur = {node}, parent[node]
        while cur is not None:
            if cur in seen:
                parent[node] = None
                break
            seen.add(cur)
            cur = parent.get(cur)

    depth: dict[int, int] = {}

    def depth_of(node: int) -> int:
        if node not in depth:
            p = parent[node]
            depth[node] = 0 if p is None else depth_of(p) + 1
        return depth[node]

    ordered = sorted(parent, key=lambda c: (depth_of(c), c))
    item_category: dict[str, int] = {}
    item_brand: dict[str, int] = {}
    for item, (brand, cats) in split.items():
        if brand is not None:
            item_brand[item] = brand
        if cats:
            leaf = cats[0]
            for c in cats[1:]:
                if c in tops:
                    break  # a second path starts
                leaf = c
            item_category[item] = leaf
    return [(c, parent[c]) for c in ordered], item_category, item_brand


def read_movielens(path: Path, *, prefix: str = "ml100k:") -> Dataset:
    root = slugify(prefix.rstrip(":-_ ")) or "movies"
    genres = [
        line.split("|")[0] for line in (path / "u.genre").read_text(encoding="latin-1").splitlines() if line.strip()
    ]
    specs = [CategorySpec(slug=root, name="Movies")]
    specs += [CategorySpec(slug=f"{root}-{slugify(g)}", name=g, parent=root) for g in genres]
    items = []
    for line in (path / "u.item").read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        flags = [g for g, flag in zip(genres, parts[5:], strict=False) if flag == "1"]
        first = flags[0] if flags else None
        items.append(
            {
                "shop_id": f"{prefix}{parts[0]}",
                "title": parts[1][:500],
                "category": f"{root}-{slugify(first)}" if first else root,
                "attributes": {"genres": flags, "release_date": parts[2], "imdb_url": parts[4]},
            }
        )
    customers = []
    for line in (path / "u.user").read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        uid, age, gender, occupation, zipcode = line.split("|")
        customers.append(
            {
                "shop_id": f"{prefix}{uid}",
                "attributes": {"age": int(age), "gender": gender, "occupation": occupation, "zip": zipcode},
            }
        )
    rows = [line.split("\t") for line in (path / "u.data").read_text().splitlines() if line.strip()]

    def events() -> Iterator[EventRow]:
        for index, (user, item, rating, ts) in enumerate(rows):
            yield EventRow(
                index=index,
                customer=f"{prefix}{user}",
                item=f"{prefix}{item}",
                type="rating",
                value=float(rating),
                occurred_at=dt.datetime.fromtimestamp(int(ts), tz=dt.UTC),
                scene="",
                context={},
                recommendation_id=None,
                event_id=f"{prefix}{user}:{item}",
            )

    return Dataset(
        name="movielens", categories=specs, items=items, customers=customers, events=events(), event_count=len(rows)
    )


def _parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "y"}:
        return True
    if lowered in {"0", "false", "no", "n"}:
        return False
    raise ValidationError(f"Expected true or false, got {value!r}.", field=name)


def read_csv_pair(path: Path) -> Dataset:
    dataset = Dataset(name="csv")
    known: dict[str, CategorySpec] = {}
    with (path / "items.csv").open(newline="", encoding="utf-8-sig") as handle:
        for index, raw in enumerate(csv.DictReader(handle)):
            try:
                dataset.items.append(_csv_item(raw, known))
            except ValidationError as exc:
                name = next(iter(exc.extra.get("fields", {})), "row")
                dataset.errors.append({"file": "items.csv", "index": index, "field": name, "message": exc.message})
    dataset.categories = list(known.values())
    customers_file = path / "customers.csv"
    if customers_file.exists():
        with customers_file.open(newline="", encoding="utf-8-sig") as handle:
            for index, raw in enumerate(csv.DictReader(handle)):
                shop_id = (raw.get("shop_id") or "").strip()
                try:
                    attributes = json.loads(raw["attributes"]) if raw.get("attributes") else {}
                except json.JSONDecodeError:
                    attributes = None
                if not shop_id or not isinstance(attributes, dict):
                    dataset.errors.append(
                        {"file": "customers.csv", "index": index, "field": "shop_id" if not shop_id else "attributes",
                         "message": "Required." if not shop_id else "Must be a JSON object."}
                    )  # fmt: skip
                    continue
                dataset.customers.append({"shop_id": shop_id, "attributes": attributes})

    events_file = path / "events.csv"
    now = timezone.now()
    types = event_types()

    def events() -> Iterator[EventRow]:
        with events_file.open(newline="", encoding="utf-8-sig") as handle:
            for index, raw in enumerate(csv.DictReader(handle)):
                row: dict[str, Any] = {k: v for k, v in raw.items() if k and v not in (None, "")}
                try:
                    if "value" in row:
                        row["value"] = float(row["value"])
                    if "context" in row:
                        row["context"] = json.loads(row["context"])
                    if isinstance(row.get("occurred_at"), str) and row["occurred_at"].replace(".", "", 1).isdigit():
                        row["occurred_at"] = float(row["occurred_at"])
                    yield event_validate(row, index=index, now=now, types=types)
                except (ValueError, RowError) as exc:
                    name = exc.field if isinstance(exc, RowError) else "value/context"
                    message = exc.message if isinstance(exc, RowError) else str(exc)
                    dataset.errors.append({"file": "events.csv", "index": index, "field": name, "message": message})

    dataset.events = events() if events_file.exists() else []
    return dataset


def _csv_non_negative(raw: dict[str, Any], name: str, parse: Callable[[str], Any], kind: str) -> Any:
    try:
        value = parse(raw[name])
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError(f"Not {kind}: {raw[name]!r}.", field=name) from exc
    if value < 0:
        raise ValidationError(f"{name.replace('_', ' ').capitalize()} must not be negative.", field=name)
    return value


def _csv_item(raw: dict[str, Any], known: dict[str, CategorySpec]) -> dict[str, Any]:
    shop_id = (raw.get("shop_id") or "").strip()
    if not shop_id:
        raise ValidationError("Required.", field="shop_id")
    item: dict[str, Any] = {"shop_id": shop_id}
    for name in ("title", "brand", "currency"):
        if raw.get(name):
            item[name] = raw[name].strip()
    if raw.get("category"):
        parent = None
        for part in [p for p in raw["category"].strip().split("/") if p]:
            slug = slugify(part)
            if not slug:
                raise ValidationError(f"Bad category path {raw['category']!r}.", field="category")
            known.setdefault(slug, CategorySpec(slug=slug, name=part.replace("-", " ").strip().title(), parent=parent))
            parent = slug
        item["category"] = parent
    if raw.get("price"):
        item["price"] = _csv_non_negative(raw, "price", Decimal, "a number")
    if raw.get("stock_quantity"):
        item["stock_quantity"] = _csv_non_negative(raw, "stock_quantity", int, "an integer")
        item["in_stock"] = item["stock_quantity"] > 0
    for name in ("in_stock", "is_active"):
        if raw.get(name):
            item[name] = _parse_bool(raw[name], name)
    if raw.get("attributes"):
        try:
            attributes = json.loads(raw["attributes"])
        except json.JSONDecodeError as exc:
            raise ValidationError("Not valid JSON.", field="attributes") from exc
        if not isinstance(attributes, dict):
            raise ValidationError("Must be a JSON object.", field="attributes")
        item["attributes"] = attributes
    return item


# --- loading ---------------------------------------------------------------------------------------


def _load_categories(specs: list[CategorySpec]) -> int:
    existing = {c.slug: c for c in Category.objects.filter(slug__in=[s.slug for s in specs])}
    created = 0
    pending = [s for s in specs if s.slug not in existing]
    # Parents first: create level by level so each path can be computed from its parent's.
    while pending:
        ready = [s for s in pending if s.parent is None or s.parent in existing]
        if not ready:
            ready = pending  # a parent missing from the specs: attach to the root level
        batch = []
        for spec in ready:
            parent = existing.get(spec.parent) if spec.parent else None
            path = f"{parent.path if parent else PATH_SEPARATOR}{spec.slug}{PATH_SEPARATOR}"
            batch.append(Category(name=spec.name[:200], slug=spec.slug, parent=parent, path=path,
                                  depth=max(path.count(PATH_SEPARATOR) - 2, 0)))  # fmt: skip
        Category.objects.bulk_create(batch, ignore_conflicts=True)
        for category in Category.objects.filter(slug__in=[c.slug for c in batch]):
            existing[category.slug] = category
        created += len(batch)
        done = {s.slug for s in ready}
        pending = [s for s in pending if s.slug not in done]
    return created


_ITEM_UPDATE_FIELDS = [*ITEM_FIELDS, "updated_at"]


def _load_items(rows: list[dict[str, Any]]) -> int:
    slugs = {r["category"] for r in rows if r.get("category")}
    categories = dict(Category.objects.filter(slug__in=slugs).values_list("slug", "id"))
    now = timezone.now()
    if connection.vendor == "postgresql":
        return _pg_load_items(rows, categories, now)
    before = Item.objects.count()
    objs = []
    for row in rows:
        values = {k: v for k, v in row.items() if k != "category"}
        objs.append(
            Item(**values, category_id=categories.get(row.get("category") or ""), created_at=now, updated_at=now)
        )
    # Upsert: a re-import refreshes the catalog and creates nothing twice.
    Item.objects.bulk_create(
        objs, batch_size=2000, update_conflicts=True, unique_fields=["shop_id"], update_fields=_ITEM_UPDATE_FIELDS
    )
    return Item.objects.count() - before


_ITEM_DEFAULTS: dict[str, Any] = {"title": "", "brand": "", "price": None, "currency": "USD", "stock_quantity": None,
                  "in_stock": True, "is_active": True, "attributes": {}}  # fmt: skip


def _pg_load_items(rows: list[dict[str, Any]], categories: dict[str, int], now: Any) -> int:
    columns = ["shop_id", "title", "category_id", "brand", "price", "currency", "stock_quantity", "in_stock",
               "is_active", "attributes", "created_at", "updated_at"]  # fmt: skip
    stamp = now.isoformat()

    def records() -> Iterator[list[Any]]:
        for row in rows:
            values = {**_ITEM_DEFAULTS, **row}
            yield [
                values["shop_id"], values["title"], categories.get(row.get("category") or ""), values["brand"],
                values["price"], values["currency"], values["stock_quantity"], values["in_stock"],
                values["is_active"], values["attributes"], stamp, stamp,
            ]  # fmt: skip

    update = [c for c in columns if c not in ("shop_id", "created_at")]
    return pg_copy_upsert(table=Item._meta.db_table, columns=columns, rows=records(), key="shop_id", update=update)


def _load_customers(rows: list[dict[str, Any]]) -> int:
    now = timezone.now()
    if connection.vendor == "postgresql":
        stamp = now.isoformat()
        table = Customer._meta.db_table
        columns = ["shop_id", "attributes", "created_at", "updated_at"]
        with_attrs = [[r["shop_id"], r["attributes"], stamp, stamp] for r in rows if r.get("attributes")]
        plain = [[r["shop_id"], {}, stamp, stamp] for r in rows if not r.get("attributes")]
        created = 0
        if with_attrs:
            created += pg_copy_upsert(
                table=table, columns=columns, rows=with_attrs, key="shop_id", update=["attributes", "updated_at"]
            )
        if plain:
            created += pg_copy_upsert(table=table, columns=columns, rows=plain, key="shop_id", update=[])
        return created
    before = Customer.objects.count()
    customers_with_attrs = [Customer(shop_id=r["shop_id"], attributes=r["attributes"], created_at=now, updated_at=now)
                            for r in rows if r.get("attributes")]  # fmt: skip
    customers_plain = [
        Customer(shop_id=r["shop_id"], created_at=now, updated_at=now) for r in rows if not r.get("attributes")
    ]
    if customers_with_attrs:
        Customer.objects.bulk_create(
            customers_with_attrs, batch_size=2000, update_conflicts=True, unique_fields=["shop_id"],
            update_fields=["attributes", "updated_at"],
        )  # fmt: skip
    if customers_plain:
        Customer.objects.bulk_create(customers_plain, batch_size=5000, ignore_conflicts=True)
    return Customer.objects.count() - before


def dataset_load(
    dataset: Dataset,
    *,
    progress: Callable[[int], None] | None = None,
    record_history: bool = True,
    chunk_size: int = EVENT_CHUNK,
) -> ImportStats:
    """Store a dataset: categories, items, customers, then events in chunks (each its own
    transaction, so a failure part-way keeps what was stored and a re-run completes it)."""
    stats = ImportStats()
    with transaction.atomic():
        stats.categories = _load_categories(dataset.categories)
        stats.items_created = _load_items(dataset.items)
        stats.customers_created = _load_customers(dataset.customers)
    # Bulk writes fire no signals: tell the item caches above the catalog (serving) that items moved.
    items_changed()
    item_ids = dict(Item.objects.values_list("shop_id", "id"))
    customer_ids = dict(Customer.objects.values_list("shop_id", "id"))
    for chunk in chunked(dataset.events, chunk_size):
        known = []
        new_customers = set()
        for row in chunk:
            if row.item not in item_ids:
                stats.errors.append({"index": row.index, "field": "item", "message": f"Unknown item {row.item!r}."})
                continue
            if row.customer not in customer_ids:
                new_customers.add(row.customer)
            known.append(row)
        with transaction.atomic():
            if new_customers:
                customer_ids.update(customers_ensure(shop_ids=new_customers))
                stats.customers_created += len(new_customers)
            stored = events_store(rows=known, customer_ids=customer_ids, item_ids=item_ids)
        stats.events_stored += len(stored)
        stats.events_duplicate += len(known) - len(stored)
        if record_history and stored:
            try:
                history_record(
                    [
                        HistoryEvent(r.customer, r.item, r.type, r.occurred_at.timestamp(), event_device(r.context))
                        for r in known
                        if r.event_id in stored
                    ]
                )
            except Exception:  # the events are stored; the cache can be rebuilt (rebuild_history)
                logger.exception("Recording imported events in the history cache failed")
        if progress is not None:
            progress(len(chunk))
    stats.errors = dataset.errors + stats.errors
    stats.error_count = len(stats.errors)
    return stats
