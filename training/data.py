"""Interaction data: index maps, the per-user time-ordered dataset, readers and splitters.

Imports only numpy and the standard library (IndexMap is loaded by the TorchServe worker).

Layout: users are rows 0..num_users-1 (their ids in `user_ids`), items are dense indices
1..num_items (0 = padding) through `item_index`. Interactions are stored CSR-style: user u's events
are `items[offsets[u]:offsets[u + 1]]`, oldest first, with parallel `timestamps`, `weights` and
`event_types` (codes into `type_names`). Item attributes are CSR too, over an attribute IndexMap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

INDEX_MAP_FORMAT = 1


class IndexMap:
    """Shop ids (strings) <-> dense indices 1..n; index 0 is padding and maps to no id."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        for value in ids:
            self.add(value)

    def add(self, value: str) -> int:
        value = str(value)
        found = self._index.get(value)
        if found is not None:
            return found
        self._ids.append(value)
        self._index[value] = len(self._ids)
        return len(self._ids)

    def index(self, value: str) -> int:
        """Index of a known id; KeyError for an unknown one."""
        return self._index[str(value)]

    def get(self, value: str, default: int = 0) -> int:
        return self._index.get(str(value), default)

    def id_of(self, index: int) -> str:
        if index <= 0 or index > len(self._ids):
            raise IndexError(f"no id at index {index}")
        return self._ids[index - 1]

    def lookup(self, values: Iterable[str]) -> np.ndarray:
        """Indices of many ids at once, 0 for unknown ones."""
        get = self._index.get
        return np.fromiter((get(str(v), 0) for v in values), dtype=np.int64)

    def ids_of(self, indices: Iterable[int]) -> list[str]:
        ids = self._ids
        return [ids[int(i) - 1] for i in indices]

    @property
    def ids(self) -> list[str]:
        """All ids in index order (ids[0] has index 1)."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, value: object) -> bool:
        return str(value) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IndexMap) and self._ids == other._ids

    def __repr__(self) -> str:
        return f"IndexMap({len(self._ids)} ids)"

    def to_json(self) -> str:
        return json.dumps({"format": INDEX_MAP_FORMAT, "ids": self._ids}, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any] | Sequence[str]) -> IndexMap:
        """Accepts what to_json() wrote (as text or already parsed), or a bare list of ids."""
        if isinstance(data, str | bytes):
            data = json.loads(data)
        if isinstance(data, Mapping):
            if int(data.get("format", INDEX_MAP_FORMAT)) != INDEX_MAP_FORMAT:
                raise ValueError(f"unsupported index map format {data.get('format')!r}")
            ids = data["ids"]
        else:
            ids = data
        out = cls(ids)
        if len(out) != len(ids):
            raise ValueError("index map has duplicate ids")
        return out


def _csr_offsets(row_of: np.ndarray, num_rows: int) -> np.ndarray:
    counts = np.bincount(row_of, minlength=num_rows)
    offsets = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _attribute_tokens(value: Any) -> list[str]:
    """Attributes as tokens: a list of values, or a mapping {"brand": "x"} -> ["brand=x"].

    A category path "a/b/c" also yields its ancestors, so sibling categories share embeddings.
    """
    if isinstance(value, Mapping):
        tokens: list[str] = []
        for key, raw in value.items():
            values = raw if isinstance(raw, list | tuple) else [raw]
            for v in values:
                if v is None or v == "":
                    continue
                text = str(v)
                if key == "category" and "/" in text:
                    parts = [p for p in text.split("/") if p]
                    tokens.extend(f"category={'/'.join(parts[: i + 1])}" for i in range(len(parts)))
                else:
                    tokens.append(f"{key}={text}")
        return tokens
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


@dataclass
class InteractionDataset:
    user_ids: list[str]
    item_index: IndexMap
    offsets: np.ndarray  # (num_users + 1,) int64
    items: np.ndarray  # (n,) int64 item indices >= 1
    timestamps: np.ndarray  # (n,) float64; positions when the source has no time
    weights: np.ndarray  # (n,) float32
    event_types: np.ndarray  # (n,) int16 codes into type_names
    type_names: list[str] = field(default_factory=lambda: ["interaction"])
    attribute_index: IndexMap = field(default_factory=IndexMap)
    attr_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # (num_items + 2,)
    attr_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    has_timestamps: bool = True

    def __post_init__(self) -> None:
        if self.attr_offsets.shape[0] != self.num_items + 2:
            # No attributes given (or the catalog grew): every item gets an empty attribute row.
            fixed = np.full(self.num_items + 2, self.attr_offsets[-1] if self.attr_offsets.size else 0, np.int64)
            n = min(self.attr_offsets.shape[0], fixed.shape[0])
            fixed[:n] = self.attr_offsets[:n]
            self.attr_offsets = fixed

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_events(
        cls,
        users: Sequence[str] | np.ndarray,
        items: Sequence[str] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray | None = None,
        event_types: Sequence[str] | np.ndarray | None = None,
        type_weights: Mapping[str, float] | None = None,
        item_attributes: Mapping[str, Any] | None = None,
        *,
        item_index: IndexMap | None = None,
        catalog: Iterable[str] | None = None,
    ) -> InteractionDataset:
        """Build from flat, parallel arrays of events in any order.

        Events are sorted by time within each user (ties keep input order). `type_weights` maps an
        event type to its training weight (types not listed weigh 1.0). `item_attributes` maps an
        item id to a list of attribute values or to a mapping such as {"category": "a/b", "brand": "x"}.
        `item_index` keeps the indices of an existing map (new items are appended); `catalog` adds
        items that have no events yet, so they can still be recommended from their attributes.
        Without timestamps the input order is the time order.
        """
        user_arr = np.asarray(users).astype(str)
        item_arr = np.asarray(items).astype(str)
        n = user_arr.shape[0]
        if item_arr.shape[0] != n:
            raise ValueError("users and items must have the same length")
        has_time = timestamps is not None
        ts = np.asarray(timestamps, dtype=np.float64) if has_time else np.arange(n, dtype=np.float64)
        if ts.shape[0] != n:
            raise ValueError("timestamps must have the same length as users")

        user_ids, user_codes = np.unique(user_arr, return_inverse=True)
        unique_items, item_codes = np.unique(item_arr, return_inverse=True)
        index = IndexMap(item_index.ids) if item_index is not None else IndexMap()
        for value in unique_items.tolist():
            index.add(value)
        for value in catalog or ():
            index.add(value)
        if item_attributes:
            for value in item_attributes:
                index.add(value)
        code_to_index = index.lookup(unique_items.tolist())
        item_idx = code_to_index[item_codes]

        if event_types is not None:
            type_arr = np.asarray(event_types).astype(str)
            type_names_arr, type_codes = np.unique(type_arr, return_inverse=True)
            type_names = [str(t) for t in type_names_arr.tolist()]
        else:
            type_names = ["interaction"]
            type_codes = np.zeros(n, dtype=np.int64)
        weights_by_type = np.array([float((type_weights or {}).get(t, 1.0)) for t in type_names], dtype=np.float32)
        weights = weights_by_type[type_codes]

        order = np.lexsort((np.arange(n), ts, user_codes))
        offsets = _csr_offsets(user_codes, len(user_ids))
        ds = cls(
            user_ids=[str(u) for u in user_ids.tolist()],
            item_index=index,
            offsets=offsets,
            items=item_idx[order].astype(np.int64),
            timestamps=ts[order],
            weights=weights[order].astype(np.float32),
            event_types=type_codes[order].astype(np.int16),
            type_names=type_names,
            has_timestamps=has_time,
        )
        if item_attributes:
            ds.set_item_attributes(item_attributes)
        return ds

    @classmethod
    def from_sequences(
        cls,
        sequences: Mapping[str, Sequence[str]],
        item_attributes: Mapping[str, Any] | None = None,
        *,
        item_index: IndexMap | None = None,
    ) -> InteractionDataset:
        """Users' item sequences (oldest first) without timestamps."""
        users: list[str] = []
        items: list[str] = []
        for user, seq in sequences.items():
            users.extend([str(user)] * len(seq))
            items.extend(str(i) for i in seq)
        ds = cls.from_events(users, items, None, item_attributes=item_attributes, item_index=item_index)
        return ds

    def set_item_attributes(self, item_attributes: Mapping[str, Any]) -> None:
        attr_index = IndexMap()
        rows: list[list[int]] = [[] for _ in range(self.num_items + 1)]
        for item_id, value in item_attributes.items():
            idx = self.item_index.get(item_id)
            if idx == 0:
                continue
            rows[idx] = sorted({attr_index.add(tok) for tok in _attribute_tokens(value)})
        lengths = np.array([0, *[len(r) for r in rows]], dtype=np.int64)
        self.attribute_index = attr_index
        self.attr_offsets = np.cumsum(lengths).astype(np.int64)
        self.attr_ids = np.array([a for r in rows for a in r], dtype=np.int64)

    # ---- access -------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_index)

    @property
    def num_interactions(self) -> int:
        return int(self.items.shape[0])

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_index)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user_row: int) -> np.ndarray:
        return self.items[self.offsets[user_row] : self.offsets[user_row + 1]]

    def sequences(self) -> list[np.ndarray]:
        return np.split(self.items, self.offsets[1:-1])

    def user_of_event(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_users), self.lengths())

    def item_attributes(self, item: int) -> np.ndarray:
        return self.attr_ids[self.attr_offsets[item] : self.attr_offsets[item + 1]]

    def attribute_matrix(self, max_attributes: int | None = None) -> np.ndarray:
        """(num_items + 1, A) attribute indices per item, 0-padded; row 0 is padding."""
        lengths = np.diff(self.attr_offsets)[: self.num_items + 1]
        width = int(lengths.max()) if lengths.size else 0
        if max_attributes is not None:
            width = min(width, max_attributes)
        out = np.zeros((self.num_items + 1, max(width, 1)), dtype=np.int64)
        for item in np.nonzero(lengths)[0]:
            attrs = self.item_attributes(int(item))[:width]
            out[item, : attrs.shape[0]] = attrs
        return out

    def item_counts(self, weighted: bool = False) -> np.ndarray:
        return np.bincount(self.items, weights=self.weights if weighted else None, minlength=self.num_items + 1).astype(
            np.float64
        )

    def select(self, keep: np.ndarray) -> InteractionDataset:
        """A dataset with the same users, items and attributes but only the events where keep is True."""
        user_of = self.user_of_event()[keep]
        return InteractionDataset(
            user_ids=self.user_ids,
            item_index=self.item_index,
            offsets=_csr_offsets(user_of, self.num_users),
            items=self.items[keep],
            timestamps=self.timestamps[keep],
            weights=self.weights[keep],
            event_types=self.event_types[keep],
            type_names=self.type_names,
            attribute_index=self.attribute_index,
            attr_offsets=self.attr_offsets,
            attr_ids=self.attr_ids,
            has_timestamps=self.has_timestamps,
        )

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Each event's position within its user's sequence and its distance from the end (0 = last)."""
        lengths = self.lengths()
        pos = np.arange(self.num_interactions) - np.repeat(self.offsets[:-1], lengths)
        from_end = np.repeat(lengths, lengths) - 1 - pos
        return pos, from_end


# ---- evaluation sets and splits -----------------------------------------------------------------
@dataclass
class EvalSet:
    """Per evaluated user: the history the model sees and the one held-out target item."""

    users: np.ndarray  # user rows in the dataset
    histories: list[np.ndarray]
    targets: np.ndarray  # item indices
    negatives: list[np.ndarray] | None = None  # sampled candidates per user (without the target)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, rows: np.ndarray) -> EvalSet:
        return EvalSet(
            users=self.users[rows],
            histories=[self.histories[int(i)] for i in rows],
            targets=self.targets[rows],
            negatives=[self.negatives[int(i)] for i in rows] if self.negatives is not None else None,
        )


@dataclass
class Split:
    train: InteractionDataset  # what models fit on
    valid: EvalSet  # model selection and early stopping only
    test: EvalSet
    full: InteractionDataset  # everything (train + held-out events)
    # Everything the test histories contain (train + validation events): what a model may be
    # refitted on, once selected, before the test; never the test targets.
    refit: InteractionDataset | None = None
    kind: str = "loo"
    info: dict[str, Any] = field(default_factory=dict)


def split_leave_one_out(dataset: InteractionDataset) -> Split:
    """Last event = test target, second-last = validation target, the rest = training.

    The test history includes the validation item. Users with two events are tested but not
    validated; users with one event only train.
    """
    lengths = dataset.lengths()
    _, from_end = dataset.positions()
    ev_len = np.repeat(lengths, lengths)
    held = np.where(ev_len >= 3, 2, np.where(ev_len == 2, 1, 0))
    train = dataset.select(from_end >= held)

    seqs = dataset.sequences()
    test_rows = np.nonzero(lengths >= 2)[0]
    valid_rows = np.nonzero(lengths >= 3)[0]
    test = EvalSet(
        users=test_rows,
        histories=[seqs[u][:-1] for u in test_rows],
        targets=np.array([seqs[u][-1] for u in test_rows], dtype=np.int64),
    )
    valid = EvalSet(
        users=valid_rows,
        histories=[seqs[u][:-2] for u in valid_rows],
        targets=np.array([seqs[u][-2] for u in valid_rows], dtype=np.int64),
    )
    refit = dataset.select(from_end >= np.where(ev_len >= 2, 1, 0))
    return Split(train=train, valid=valid, test=test, full=dataset, refit=refit, kind="loo")


def _first_new_after(
    dataset: InteractionDataset, start: float, end: float
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Per user: history = events at or before `start`; target = the first event in (start, end]
    whose item is not already in that history (a re-visit is masked and so can't be ranked)."""
    users, histories, targets = [], [], []
    for u in range(dataset.num_users):
        lo, hi = dataset.offsets[u], dataset.offsets[u + 1]
        ts = dataset.timestamps[lo:hi]
        seq = dataset.items[lo:hi]
        cut = int(np.searchsorted(ts, start, side="right"))
        if cut == 0 or cut == hi - lo:
            continue
        history = seq[:cut]
        later = np.nonzero(ts[cut:] <= end)[0]
        if later.size == 0:
            continue
        seen = set(history.tolist())
        for j in later:
            item = int(seq[cut + j])
            if item not in seen:
                users.append(u)
                histories.append(history)
                targets.append(item)
                break
    return np.array(users, dtype=np.int64), histories, np.array(targets, dtype=np.int64)


def split_by_time(
    dataset: InteractionDataset,
    *,
    test_cutoff: float | None = None,
    valid_cutoff: float | None = None,
    holdout_fraction: float = 0.1,
) -> Split:
    """Everything after `test_cutoff` is held out for test, (valid_cutoff, test_cutoff] for validation.

    Cut-offs default to the time quantiles that hold out `holdout_fraction` of the events each.
    Models train on events up to valid_cutoff. A user is evaluated on the first new item after a
    cut-off, seeing everything before it.
    """
    ts = dataset.timestamps
    if ts.size == 0:
        raise ValueError("the dataset has no events")
    if test_cutoff is None:
        test_cutoff = float(np.quantile(ts, 1.0 - holdout_fraction))
    if valid_cutoff is None:
        valid_cutoff = float(np.quantile(ts[ts <= test_cutoff], 1.0 - holdout_fraction / (1.0 - holdout_fraction)))
    if valid_cutoff > test_cutoff:
        raise ValueError("valid_cutoff must not be after test_cutoff")
    train = dataset.select(ts <= valid_cutoff)
    vu, vh, vt = _first_new_after(dataset, valid_cutoff, test_cutoff)
    tu, th, tt = _first_new_after(dataset, test_cutoff, float("inf"))
    return Split(
        train=train,
        valid=EvalSet(users=vu, histories=vh, targets=vt),
        test=EvalSet(users=tu, histories=th, targets=tt),
        full=dataset,
        refit=dataset.select(ts <= test_cutoff),
        kind="time",
        info={"valid_cutoff": valid_cutoff, "test_cutoff": test_cutoff},
    )


# ---- readers ------------------------------------------------------------------------------------
def read_s3rec(path: str | Path, attributes: str | Path | None = None) -> InteractionDataset:
    """`user item item ...` per line (oldest first) plus optional `{"item": [attribute ids]}` JSON."""
    users: list[str] = []
    items: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            users.extend([parts[0]] * (len(parts) - 1))
            items.extend(parts[1:])
    # Numeric ids keep their numeric order as indices (item "1" -> index 1), like the original code.
    unique = sorted(set(items), key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))
    attrs = None
    if attributes is not None:
        with open(attributes, encoding="utf-8") as fh:
            attrs = {str(k): [str(a) for a in v] for k, v in json.load(fh).items()}
    return InteractionDataset.from_events(users, items, None, item_attributes=attrs, item_index=IndexMap(unique))


def _read_movielens_dat(directory: Path) -> InteractionDataset:
    """MovieLens 1M/10M layout: ratings.dat `user::item::rating::time`, movies.dat `item::title (year)::A|B`."""
    rows = [line.split("::") for line in (directory / "ratings.dat").read_text(encoding="latin-1").splitlines() if line]
    raw = np.array([[int(r[0]), int(r[1]), int(r[3])] for r in rows], dtype=np.int64).reshape(-1, 3)
    attrs: dict[str, list[str]] = {}
    movies = directory / "movies.dat"
    if movies.exists():
        for line in movies.read_text(encoding="latin-1").splitlines():
            parts = line.split("::")
            if len(parts) < 3:
                continue
            attrs[parts[0]] = [f"genre={g}" for g in parts[2].split("|") if g]
            year = parts[1].strip()[-5:-1]
            if year.isdigit():
                attrs[parts[0]].append(f"decade={int(year) // 10 * 10}")
    unique = sorted({int(i) for i in raw[:, 1].tolist()})
    rated = {str(i) for i in unique}  # movies.dat lists unrated movies too: they'd be empty items
    return InteractionDataset.from_events(
        raw[:, 0].astype(str),
        raw[:, 1].astype(str),
        raw[:, 2].astype(np.float64),
        item_attributes={k: v for k, v in attrs.items() if k in rated} or None,
        item_index=IndexMap(str(i) for i in unique),
    )


def read_movielens(directory: str | Path) -> InteractionDataset:
    """MovieLens 100K: u.data (user, item, rating, time) with genres from u.item as attributes;
    a directory with ratings.dat instead (MovieLens 1M's layout) is read by its own rules."""
    directory = Path(directory)
    if not (directory / "u.data").exists() and (directory / "ratings.dat").exists():
        return _read_movielens_dat(directory)
    raw = np.loadtxt(directory / "u.data", dtype=np.int64, ndmin=2)
    attrs: dict[str, list[str]] = {}
    item_file = directory / "u.item"
    if item_file.exists():
        genre_names: list[str] = []
        genre_file = directory / "u.genre"
        if genre_file.exists():
            for line in genre_file.read_text(encoding="latin-1").splitlines():
                if "|" in line:
                    genre_names.append(line.split("|")[0])
        for line in item_file.read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            if len(parts) < 6:
                continue
            flags = parts[-19:]
            names = genre_names if len(genre_names) == len(flags) else [str(i) for i in range(len(flags))]
            attrs[parts[0]] = [f"genre={names[i]}" for i, f in enumerate(flags) if f.strip() == "1"]
            year = parts[2][-4:]
            if year.isdigit():
                attrs[parts[0]].append(f"decade={int(year) // 10 * 10}")
    unique = sorted({int(i) for i in raw[:, 1].tolist()})
    return InteractionDataset.from_events(
        raw[:, 0].astype(str),
        raw[:, 1].astype(str),
        raw[:, 3].astype(np.float64),
        item_attributes=attrs or None,
        item_index=IndexMap(str(i) for i in unique),
    )


def _read_pairs(path: str | Path) -> tuple[list[str], list[str], list[float] | None]:
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise ValueError(f"{path}:{number}: expected user<TAB>item[<TAB>timestamp]")
            users.append(parts[0])
            items.append(parts[1])
            if len(parts) >= 3 and parts[2] != "":
                times.append(float(parts[2]))
    if times and len(times) != len(users):
        raise ValueError(f"{path}: timestamps must be on every line or on none")
    return users, items, (times or None)


def read_split(train: str | Path, test: str | Path, negatives: str | Path | None = None) -> Split:
    """Generic explicit split: train.tsv and test.tsv (`user<TAB>item[<TAB>timestamp]`), optional
    negatives.tsv (`user<TAB>test_item<TAB>neg1...`).

    Validation target = each user's latest training interaction (by time, else the last line); the
    model trains on the rest. The test history is the user's whole training sequence; a user with
    several test lines is evaluated on the first (earliest) one.
    """
    tr_users, tr_items, tr_times = _read_pairs(train)
    te_users, te_items, te_times = _read_pairs(test)
    catalog = list(dict.fromkeys(te_items))
    full = InteractionDataset.from_events(tr_users, tr_items, tr_times, catalog=catalog)
    row_of = {u: i for i, u in enumerate(full.user_ids)}
    seqs = full.sequences()

    order = np.argsort(np.asarray(te_times), kind="stable") if te_times else np.arange(len(te_users))
    first: dict[str, str] = {}
    for i in order.tolist():
        first.setdefault(te_users[i], te_items[i])
    neg_map: dict[tuple[str, str], list[str]] = {}
    if negatives is not None:
        with open(negatives, encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3:
                    neg_map[(parts[0], parts[1])] = parts[2:]

    users, histories, targets, negs = [], [], [], []
    skipped = 0
    for user, item in sorted(first.items(), key=lambda kv: row_of.get(kv[0], -1)):
        row = row_of.get(user)
        if row is None or len(seqs[row]) == 0:
            skipped += 1  # no history at all: nothing to condition on
            continue
        users.append(row)
        histories.append(seqs[row])
        targets.append(full.item_index.index(item))
        if negatives is not None:
            negs.append(full.item_index.lookup(neg_map.get((user, item), [])))
    test_set = EvalSet(
        users=np.array(users, dtype=np.int64),
        histories=histories,
        targets=np.array(targets, dtype=np.int64),
        negatives=negs if negatives is not None else None,
    )
    negs_unknown = sum(int((n == 0).sum()) for n in negs)
    if negs_unknown:
        raise ValueError(f"{negs_unknown} negative items are in neither train nor test")

    _, from_end = full.positions()
    lengths = full.lengths()
    holds_valid = np.repeat(lengths >= 2, lengths) & (from_end == 0)
    train_ds = full.select(~holds_valid)
    valid_rows = np.nonzero(lengths >= 2)[0]
    valid = EvalSet(
        users=valid_rows,
        histories=[seqs[u][:-1] for u in valid_rows],
        targets=np.array([seqs[u][-1] for u in valid_rows], dtype=np.int64),
    )
    return Split(
        train=train_ds,
        valid=valid,
        test=test_set,
        full=full,
        refit=full,
        kind="split",
        info={"test_users_without_history": skipped},
    )
