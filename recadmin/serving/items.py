"""Item metadata moved to the catalog (recadmin.catalog.metadata, a catalog selector); kept for importers."""

from __future__ import annotations

from recadmin.catalog.metadata import items_metadata as items_metadata
