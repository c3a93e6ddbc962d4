"""The catalogue fixture: a realistic ``GET /api/v3/models`` answer with some odd entries."""

from __future__ import annotations

from pathlib import Path

from wavespeed_async._core.catalog import Model, decode_models

CATALOG_PATH = Path(__file__).with_name("catalog.json")


def catalog_bytes() -> bytes:
    return CATALOG_PATH.read_bytes()


def catalog_models() -> dict[str, Model]:
    return decode_models(catalog_bytes()).by_id()
