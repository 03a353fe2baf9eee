"""JSON Schema files generated from the Pydantic models (``runner schema``)."""

from __future__ import annotations

from pathlib import Path

import orjson

from .result import RunResultModel
from .scenario import Scenario

SCHEMA_FILES = {
    "scenario.schema.json": Scenario,
    "result.schema.json": RunResultModel,
}


def render_schemas() -> dict[str, bytes]:
    """File name -> JSON Schema bytes (stable key order, trailing newline)."""
    return {
        name: orjson.dumps(model.model_json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        for name, model in SCHEMA_FILES.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_schemas().items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written
