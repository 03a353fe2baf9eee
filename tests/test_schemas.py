"""The committed JSON Schema files are exactly what the models generate."""

from pathlib import Path

import pytest

from runner.cli import main
from runner.schemas.export import render_schemas

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@pytest.mark.parametrize("name", sorted(render_schemas()))
def test_committed_schema_is_not_stale(name):
    committed = (SCHEMA_DIR / name).read_bytes()
    assert committed == render_schemas()[name], f"schemas/{name} is stale: run 'runner schema'"


def test_schema_command_writes_both_files(tmp_path, capsys):
    assert main(["schema", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.schema.json", "scenario.schema.json"]


def test_example_scenarios_point_editors_at_the_schema():
    for path in (SCHEMA_DIR.parent / "scenarios").glob("*.yaml"):
        assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/scenario.schema.json")
