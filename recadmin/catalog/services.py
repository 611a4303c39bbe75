"""Writes to the catalog. Everything the API, the admin and the importers change goes through here."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Length, Replace, Substr
from django.utils import timezone

from recadmin.catalog.cache import items_changed
from recadmin.catalog.models import PATH_SEPARATOR, Category, Customer, Item
from recadmin.catalog.selectors import PG_JSON_TEXT_ARRAY, pg_json_param
from recadmin.core.errors import Conflict, ValidationError

# Item fields a client may set, besides shop_id. `category` is given as the category's slug.
ITEM_FIELDS = (
    "title",
    "category",
    "brand",
    "price",
    "currency",
    "stock_quantity",
    "in_stock",
    "is_active",
    "attributes",
)
CUSTOMER_FIELDS = ("attributes",)
# category_update(parent=KEEP) leaves the parent alone; parent=None makes the category a root.
KEEP: Any = object()


@dataclass
class BulkUpsertResult:
    created: int = 0
    updated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


# --- categories ------------------------------------------------------------------------------------


def _depth(path: str) -> int:
    return max(path.count(PATH_SEPARATOR) - 2, 0)


@transaction.atomic
def category_create(*, name: str, slug: str, parent: Category | None = None) -> Category:
    if Category.objects.filter(slug=slug).exists():
        raise Conflict(f"A category with slug {slug!r} exists.", extra={"fields": {"slug": ["Already exists."]}})
    category = Category(name=name, slug=slug, parent=parent)
    category.path = category.compute_path()
    category.depth = _depth(category.path)
    category.full_clean()
    category.save()
    return category


@transaction.atomic
def category_update(
    *, category: Category, name: str | None = None, slug: str | None = None, parent: Any = KEEP
) -> Category:
    """Rename, re-slug or move a category; the subtree's paths follow in one UPDATE."""
    old_path = category.path
    if name is not None:
        category.name = name
    if slug is not None:
        category.slug = slug
    if parent is not KEEP:
        if parent is not None and (parent.pk == category.pk or parent.path.startswith(old_path)):
            raise ValidationError("A category cannot be moved below itself.", field="parent")
        category.parent = parent
    category.path = category.compute_path()
    category.depth = _depth(category.path)
    category.full_clean()
    category.save()  # post_save invalidates every cached item (catalog.cache)
    if category.path != old_path:
        # Descendants keep their own tail: new prefix + what followed the old prefix. Depth is derived
        # from the path as _depth does (separators - 2), shifted by what the prefix gained: SET sees the
        # old path, so both columns change in the one UPDATE.
        shift = category.path.count(PATH_SEPARATOR) - old_path.count(PATH_SEPARATOR)
        separators = Length("path") - Length(Replace("path", Value(PATH_SEPARATOR), Value("")))
        Category.objects.filter(path__startswith=old_path).exclude(pk=category.pk).update(
            path=Concat(Value(category.path), Substr(F("path"), len(old_path) + 1)), depth=separators + (shift - 2)
        )
    return category


@transaction.atomic
def category_ensure(*, slug: str, name: str, parent: Category | None = None) -> Category:
    """Get a category by slug or create it (importers: idempotent)."""
    existing = Category.objects.filter(slug=slug).first()
    if existing is not None:
        return existing
    return category_create(name=name, slug=slug, parent=parent)


def category_rebuild_paths() -> int:
    """Recompute every path from `parent` (after raw edits or admin moves). Returns rows changed."""
    categories = list(Category.objects.all())
    slug_of = {c.pk: c.slug for c in categories}
    # A parent missing from the table makes a root; a cycle is cut (see _category_paths).
    paths = _category_paths({c.slug: slug_of.get(c.parent_id) if c.parent_id else None for c in categories})

    changed = []
    for node in categories:
        new_path = paths[node.slug]
        if node.path != new_path:
            node.path, node.depth = new_path, _depth(new_path)
            changed.append(node)
    Category.objects.bulk_update(changed, ["path", "depth"], batch_size=1000)
    if changed:
        items_changed()
    return len(changed)


@transaction.atomic
def category_delete(*, category: Category) -> None:
    """Delete a category nobody uses: refused (409) while items or child categories point at it."""
    items = Item.objects.filter(category=category).count()
    children = Category.objects.filter(parent=category).count()
    if items or children:
        raise Conflict(
            f"Category {category.slug!r} is in use by {items} item(s) and {children} child category(ies).",
            extra={"items": items, "children": children},
        )
    category.delete()  # post_delete invalidates every cached item (catalog.cache)


def _category_paths(parent_of: Mapping[str, str | None]) -> dict[str, str]:
    """Every node's path from a slug -> parent slug map (a cycle is cut where the walk closes it)."""
    paths: dict[str, str] = {}
    for start in parent_of:
        chain: list[str] = []
        node: str | None = start
        while node is not None and node not in paths:
            if node in chain:  # a cycle left by raw edits: cut it here rather than loop
                node = None
                break
            chain.append(node)
            node = parent_of[node]
        prefix = paths[node] if node is not None else PATH_SEPARATOR
        for slug in reversed(chain):
            prefix = paths[slug] = f"{prefix}{slug}{PATH_SEPARATOR}"
    return paths


def _category_batch_problem(
    prepared: Mapping[str, Mapping[str, Any]],
    parent_of: Mapping[str, str | None],
    existing: Iterable[str],
    max_path: int,
) -> tuple[str, str, str] | None:
    """The first batch row that cannot be stored as the tree stands: (slug, field, message)."""
    known = set(existing) | set(prepared)
    for slug in prepared:
        parent = parent_of[slug]
        if parent is not None and parent not in known:
            return slug, "parent", f"Unknown parent category {parent!r}."
    for slug in prepared:
        chain, node = [slug], parent_of[slug]
        while node is not None and node not in chain:
            chain.append(node)
            node = parent_of[node]
        if node is not None:  # the walk came back to a node it passed: a cycle
            cycle = " -> ".join([*chain[chain.index(node) :], node])
            return slug, "parent", f"Parent {parent_of[slug]!r} would make a cycle ({cycle})."
        if sum(len(n) + 1 for n in chain) + 1 > max_path:
            # Deeper than the path column holds: rare enough to refuse rather than truncate.
            return slug, "parent", "The category tree would be too deep here."
    return None


@transaction.atomic
def categories_bulk_upsert(*, rows: Sequence[Mapping[str, Any]]) -> BulkUpsertResult:
    """Upsert categories by slug: rows are {"slug", "name", "parent": slug or None}; a parent may be
    defined in the same batch, in any order. Omitted fields keep their values (a new category needs a
    name). Rows naming an unknown parent or closing a cycle are reported with their index and field
    and skipped; the others are stored, and every path below a moved category follows.

    The whole tree is read once: category tables are small next to items, and only the full picture
    tells a move that closes a cycle through existing categories from one that does not."""
    result = BulkUpsertResult()
    prepared: dict[str, dict[str, Any]] = {}
    row_index: dict[str, int] = {}
    for index, row in enumerate(rows):
        slug = str(row.get("slug") or "")
        if not slug:
            result.errors.append({"index": index, "field": "slug", "message": "This field is required."})
            continue
        prepared.setdefault(slug, {}).update({k: row[k] for k in ("name", "parent") if k in row})
        row_index[slug] = index  # later rows win; errors point at the last row of a slug

    existing = {c.slug: c for c in Category.objects.all()}
    slug_of = {c.pk: c.slug for c in existing.values()}

    def reject(slug: str, field_name: str, message: str) -> None:
        result.errors.append({"index": row_index[slug], "field": field_name, "message": message})
        del prepared[slug]

    for slug, values in list(prepared.items()):
        if slug not in existing and not values.get("name"):
            reject(slug, "name", "A new category needs a name.")
        elif values.get("parent") == slug:
            reject(slug, "parent", "A category cannot be its own parent.")

    max_path = Category._meta.get_field("path").max_length or 1000
    # Rejecting a row can orphan or un-cycle others: repeat until a pass rejects nothing.
    while True:
        parent_of = {slug: slug_of.get(c.parent_id) if c.parent_id else None for slug, c in existing.items()}
        for slug, values in prepared.items():
            if "parent" in values:
                parent_of[slug] = values["parent"] or None
            elif slug not in existing:
                parent_of[slug] = None
        problem = _category_batch_problem(prepared, parent_of, existing.keys(), max_path)
        if problem is None:
            break
        reject(*problem)
    paths = _category_paths(parent_of)
    if not prepared:
        return result

    now = timezone.now()
    to_create = [Category(slug=s, name=v["name"], created_at=now) for s, v in prepared.items() if s not in existing]
    try:
        with transaction.atomic():
            Category.objects.bulk_create(to_create, batch_size=2000)
    except IntegrityError as exc:
        raise Conflict("A concurrent request created some of these categories; send the batch again.") from exc
    nodes = {**existing, **{c.slug: c for c in Category.objects.filter(slug__in=[c.slug for c in to_create])}}
    to_update = []
    for slug, node in nodes.items():
        parent = parent_of[slug]
        wanted = (
            prepared.get(slug, {}).get("name", node.name),
            nodes[parent].pk if parent is not None else None,
            paths[slug],
            _depth(paths[slug]),
        )
        if (node.name, node.parent_id, node.path, node.depth) != wanted:
            node.name, node.parent_id, node.path, node.depth = wanted
            to_update.append(node)
    Category.objects.bulk_update(to_update, ["name", "parent", "path", "depth"], batch_size=2000)
    result.created = len(to_create)
    result.updated = len(prepared) - len(to_create)
    if to_update:
        items_changed()  # paths moved: every cached item path is stale
    return result


# --- items -----------------------------------------------------------------------------------------


def _resolve_categories(slugs: Iterable[str]) -> dict[str, Category]:
    wanted = {s for s in slugs if s}
    if not wanted:
        return {}
    return {c.slug: c for c in Category.objects.filter(slug__in=wanted)}


def _validate_item_data(data: Mapping[str, Any], categories: Mapping[str, Category]) -> dict[str, Any]:
    """Turn API/import data into model field values. Raises ValidationError naming the field."""
    values: dict[str, Any] = {}
    for name in ITEM_FIELDS:
        if name not in data:
            continue
        value = data[name]
        if name == "category":
            if value in (None, ""):
                values["category"] = None
            elif isinstance(value, Category):
                values["category"] = value
            else:
                category = categories.get(str(value))
                if category is None:
                    raise ValidationError(f"Unknown category slug {value!r}.", field="category")
                values["category"] = category
        elif name == "price":
            if value is not None:
                value = Decimal(str(value))
                if value < 0:
                    raise ValidationError("Price must not be negative.", field="price")
            values["price"] = value
        elif name == "stock_quantity":
            if value is not None and int(value) < 0:
                raise ValidationError("Stock quantity must not be negative.", field="stock_quantity")
            values["stock_quantity"] = value
        elif name == "attributes":
            values["attributes"] = dict(value or {})
        elif value is None and name in ("title", "brand", "currency"):
            values[name] = ""
        else:
            values[name] = value
    # A shop that only tracks quantities should not have to send the flag as well.
    if "stock_quantity" in values and "in_stock" not in data and values["stock_quantity"] is not None:
        values["in_stock"] = values["stock_quantity"] > 0
    return values


def _apply(item: Item, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        setattr(item, name, value)


@transaction.atomic
def item_create(*, shop_id: str, data: Mapping[str, Any]) -> Item:
    if Item.objects.filter(shop_id=shop_id).exists():
        raise Conflict(f"Item {shop_id!r} exists; use PUT to upsert.", extra={"fields": {"shop_id": ["Exists."]}})
    values = _validate_item_data(data, _resolve_categories([str(data.get("category") or "")]))
    _require_new_item_fields(values)
    item = Item(shop_id=shop_id)
    _apply(item, values)
    item.save()  # post_save drops its cache entry (catalog.cache)
    return item


NEW_ITEM_TITLE_MESSAGE = "A new item needs a title."


def _require_new_item_fields(values: Mapping[str, Any]) -> None:
    """A new item needs a title: an upsert of `{}` must not create a nameless item."""
    if not str(values.get("title") or "").strip():
        raise ValidationError(NEW_ITEM_TITLE_MESSAGE, field="title")


@transaction.atomic
def item_upsert(*, shop_id: str, data: Mapping[str, Any]) -> tuple[Item, bool]:
    """Create the item or update the fields given (others keep their values). Returns (item, created)."""
    values = _validate_item_data(data, _resolve_categories([str(data.get("category") or "")]))
    item = Item.objects.select_for_update().filter(shop_id=shop_id).first()
    created = item is None
    if item is None:
        _require_new_item_fields(values)
        item = Item(shop_id=shop_id)
    _apply(item, values)
    item.save()  # post_save drops its cache entry (catalog.cache)
    return item, created


@transaction.atomic
def item_update(*, item: Item, data: Mapping[str, Any]) -> Item:
    values = _validate_item_data(data, _resolve_categories([str(data.get("category") or "")]))
    _apply(item, values)
    item.save(update_fields=[*values.keys(), "updated_at"])  # post_save drops its cache entry
    return item


@transaction.atomic
def item_deactivate(*, item: Item) -> Item:
    """What DELETE does: the item leaves recommendations but its events stay as training data."""
    if item.is_active:
        item.is_active = False
        item.save(update_fields=["is_active", "updated_at"])  # post_save drops its cache entry
    return item


@transaction.atomic
def items_bulk_upsert(*, rows: Sequence[Mapping[str, Any]], batch_size: int = 2000) -> BulkUpsertResult:
    """Upsert many items by shop_id in a few queries. Rows that fail validation are reported with
    their index and field and skipped; the others are stored. Later rows win over earlier ones."""
    result = BulkUpsertResult()
    categories = _resolve_categories(str(r.get("category") or "") for r in rows if isinstance(r.get("category"), str))
    prepared: dict[str, dict[str, Any]] = {}
    row_indexes: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        shop_id = str(row.get("shop_id") or "")
        if not shop_id:
            result.errors.append({"index": index, "field": "shop_id", "message": "This field is required."})
            continue
        try:
            values = _validate_item_data(row, categories)
        except ValidationError as exc:
            fields = exc.extra.get("fields", {})
            name = next(iter(fields), "non_field_errors")
            result.errors.append({"index": index, "field": name, "message": exc.message})
            continue
        prepared.setdefault(shop_id, {}).update(values)
        row_indexes.setdefault(shop_id, []).append(index)
    existing = {i.shop_id: i for i in Item.objects.filter(shop_id__in=list(prepared))}
    # A new item needs its required fields, as in item_upsert. Rows of one shop id are merged (later
    # rows win), so the check is on the merged values and every row of a rejected id is reported:
    # none of them was stored.
    for shop_id in [s for s in prepared if s not in existing]:
        try:
            _require_new_item_fields(prepared[shop_id])
        except ValidationError as exc:
            name = next(iter(exc.extra.get("fields", {})), "non_field_errors")
            result.errors.extend({"index": i, "field": name, "message": exc.message} for i in row_indexes[shop_id])
            del prepared[shop_id]
    result.errors.sort(key=lambda e: e["index"])
    now = timezone.now()
    to_create: list[Item] = []
    to_update: list[Item] = []
    update_fields: set[str] = set()
    for shop_id, values in prepared.items():
        item = existing.get(shop_id)
        if item is None:
            item = Item(shop_id=shop_id, created_at=now, updated_at=now)
            _apply(item, values)
            to_create.append(item)
        else:
            _apply(item, values)
            item.updated_at = now
            update_fields.update(values)
            to_update.append(item)
    Item.objects.bulk_create(to_create, batch_size=batch_size)
    if to_update:
        Item.objects.bulk_update(to_update, [*sorted(update_fields), "updated_at"], batch_size=batch_size)
    result.created, result.updated = len(to_create), len(to_update)
    items_changed(prepared)
    return result


# --- customers -------------------------------------------------------------------------------------


@transaction.atomic
def customer_create(*, shop_id: str, attributes: Mapping[str, Any] | None = None) -> Customer:
    if Customer.objects.filter(shop_id=shop_id).exists():
        raise Conflict(f"Customer {shop_id!r} exists; use PUT to upsert.", extra={"fields": {"shop_id": ["Exists."]}})
    return Customer.objects.create(shop_id=shop_id, attributes=dict(attributes or {}))


@transaction.atomic
def customer_upsert(*, shop_id: str, attributes: Mapping[str, Any] | None = None) -> tuple[Customer, bool]:
    customer, created = Customer.objects.select_for_update().get_or_create(
        shop_id=shop_id, defaults={"attributes": dict(attributes or {})}
    )
    if not created and attributes is not None:
        customer.attributes = dict(attributes)
        customer.save(update_fields=["attributes", "updated_at"])
    return customer, created


@transaction.atomic
def customer_update(*, customer: Customer, attributes: Mapping[str, Any]) -> Customer:
    """Partial update: the given attribute keys are merged into the existing ones."""
    customer.attributes = {**(customer.attributes or {}), **dict(attributes)}
    customer.save(update_fields=["attributes", "updated_at"])
    return customer


@transaction.atomic
def customer_delete(*, customer: Customer) -> None:
    """Erase a customer and their events (a privacy request). Their cached history expires on its TTL."""
    customer.delete()


@transaction.atomic
def customers_bulk_upsert(*, rows: Sequence[Mapping[str, Any]], batch_size: int = 2000) -> BulkUpsertResult:
    result = BulkUpsertResult()
    prepared: dict[str, dict[str, Any] | None] = {}
    for index, row in enumerate(rows):
        shop_id = str(row.get("shop_id") or "")
        if not shop_id:
            result.errors.append({"index": index, "field": "shop_id", "message": "This field is required."})
            continue
        attributes = row.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            result.errors.append({"index": index, "field": "attributes", "message": "Must be an object."})
            continue
        prepared[shop_id] = attributes
    existing = {c.shop_id: c for c in Customer.objects.filter(shop_id__in=list(prepared))}
    now = timezone.now()
    to_create = [
        Customer(shop_id=s, attributes=dict(a or {}), created_at=now, updated_at=now)
        for s, a in prepared.items()
        if s not in existing
    ]
    to_update = []
    for shop_id, attributes in prepared.items():
        if shop_id in existing and attributes is not None:
            existing[shop_id].attributes, existing[shop_id].updated_at = dict(attributes), now
            to_update.append(existing[shop_id])
    Customer.objects.bulk_create(to_create, batch_size=batch_size)
    Customer.objects.bulk_update(to_update, ["attributes", "updated_at"], batch_size=batch_size)
    result.created, result.updated = len(to_create), len(prepared) - len(to_create)
    return result


def customers_ensure(*, shop_ids: Iterable[str]) -> dict[str, int]:
    """Map shop ids to primary keys, creating the customers that don't exist yet (event ingestion:
    unknown customers are created). Safe under concurrency: conflicting inserts are ignored."""
    wanted = set(shop_ids)
    if connection.vendor == "postgresql":
        return _pg_customers_ensure(list(wanted))
    found = dict(Customer.objects.filter(shop_id__in=wanted).values_list("shop_id", "id"))
    missing = wanted - found.keys()
    if missing:
        now = timezone.now()
        Customer.objects.bulk_create(
            [Customer(shop_id=s, created_at=now, updated_at=now) for s in missing],
            ignore_conflicts=True,
            batch_size=5000,
        )
        found.update(Customer.objects.filter(shop_id__in=missing).values_list("shop_id", "id"))
    return found


def _pg_customers_ensure(wanted: list[str]) -> dict[str, int]:
    table = Customer._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT shop_id, id FROM {table} WHERE shop_id = ANY({PG_JSON_TEXT_ARRAY})", [pg_json_param(wanted)]
        )
        found = dict(cursor.fetchall())
        # Sorted, so that concurrent requests creating overlapping customers take the unique-index
        # locks in the same order and cannot deadlock.
        missing = sorted(s for s in wanted if s not in found)
        if missing:
            cursor.execute(
                f"INSERT INTO {table} (shop_id, attributes, created_at, updated_at) "
                "SELECT s, '{}'::jsonb, now(), now() "
                "FROM jsonb_array_elements_text(%s::jsonb) WITH ORDINALITY AS t(s, n) ORDER BY n "
                "ON CONFLICT (shop_id) DO NOTHING",
                [pg_json_param(missing)],
            )
            cursor.execute(
                f"SELECT shop_id, id FROM {table} WHERE shop_id = ANY({PG_JSON_TEXT_ARRAY})", [pg_json_param(missing)]
            )
            found.update(cursor.fetchall())
    return found


# --- bulk loading (importers) ----------------------------------------------------------------------


def copy_escape_text(text: str) -> str:
    """A string in PostgreSQL COPY text format (backslash, tab and line breaks escaped)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_escape(value: Any) -> str:
    """A value in PostgreSQL COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"))
    return copy_escape_text(str(value))


def pg_copy_upsert(
    *, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], key: str, update: Sequence[str]
) -> int:
    """COPY rows into a temp table, then INSERT ... ON CONFLICT (key) DO UPDATE/NOTHING into `table`.
    PostgreSQL only; returns the number of rows inserted (not updated)."""
    cols = ", ".join(columns)
    tmp = f"{table}_load_tmp"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
        cursor.execute(f"ALTER TABLE {tmp} ALTER COLUMN id DROP NOT NULL")
        with cursor.cursor.copy(f"COPY {tmp} ({cols}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for row in rows:
                buffer.write("\t".join(copy_escape(v) for v in row))
                buffer.write("\n")
            copy.write(buffer.getvalue())
        action = "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in update) if update else "DO NOTHING"
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {cols} FROM {tmp} "
            f"ON CONFLICT ({key}) {action} RETURNING (xmax = 0)"
        )
        inserted = sum(1 for (fresh,) in cursor.fetchall() if fresh)
        cursor.execute(f"DROP TABLE {tmp}")
    return inserted
