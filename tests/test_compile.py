"""Compiling: templates split once, plans immutable and free of Pydantic."""

import dataclasses

import pytest

from runner.compile import compile_path, compile_scenario
from runner.loader import load_scenario


@pytest.mark.parametrize("template, expected, static", [
    ("/", "/", True),
    ("/page/{seq}", "/page/42", False),
    ("/{seq}", "/42", False),
    ("/w/{worker}/x", "/w/7/x", False),
    ("/{host}/p/{seq}?w={worker}", "/example/p/42?w=7", False),
    ("/fixed/{host}", "/fixed/example", True),
])
def test_path_templates(template, expected, static):
    render, is_static = compile_path(template, {"host": "example"})
    assert render(42, 7) == expected
    assert is_static is static


def test_plan_is_immutable_plain_data(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: p\ntarget: http://127.0.0.1:9/base/\n"
                    "defaults: {headers: {X-A: '1'}, timeout: 2s}\n"
                    "flow:\n  - {path: /a, headers: {X-B: '2'}}\n  - {name: post, method: post, path: /b, body: hi}\n"
                    "stages:\n  - {requests: 3, concurrency: 1}\n  - {duration: 1m, concurrency: 2, name: soak}\n")
    plan = compile_scenario(load_scenario(path), path)
    assert plan.target_url == "http://127.0.0.1:9/base"
    assert plan.flow[0].name == "GET /a" and plan.flow[0].headers == (("X-A", "1"), ("X-B", "2"))
    assert plan.flow[1].method == "POST" and plan.flow[1].body == b"hi" and plan.flow[1].timeout_s == 2.0
    assert [s.name for s in plan.stages] == ["stage-1", "soak"]
    assert plan.stages[1].duration_s == 60.0 and plan.stages[1].requests is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stages[0].requests = 5
    assert plan.max_concurrency == 2


def test_engine_layer_never_imports_pydantic():
    import subprocess
    import sys
    code = ("import sys, runner.executor, runner.engines.aiohttp_engine, runner.metrics, runner.plan; "
            "print('pydantic' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
