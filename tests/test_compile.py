"""Compiling: templates split once, plans immutable and free of Pydantic."""

import dataclasses

import pytest

from runner.compile import compile_scenario
from runner.loader import load_scenario
from runner.templates import compile_json, compile_template


class _User:
    seq, worker, number, iteration = 42, 7, 9, 3

    def __init__(self, **values):
        self.vars = values


@pytest.mark.parametrize("template, expected, static", [
    ("/", "/", True),
    ("/page/{seq}", "/page/42", False),
    ("/{seq}", "/42", False),
    ("/w/{worker}/x", "/w/7/x", False),
    ("/{host}/p/{seq}?w={worker}", "/example/p/42?w=7", False),
    ("/fixed/{host}", "/fixed/example", True),
    ("/u/{vu}/i/{iteration}/{token}", "/u/9/i/3/abc", False),
    ("/t/{users.user}", "/t/ann", False),
])
def test_path_templates(template, expected, static):
    compiled = compile_template(template, {"host": "example"}, set(), None)
    assert compiled.render(_User(token="abc", **{"users.user": "ann"})) == expected
    assert (compiled.constant is not None) is static


def test_generators_render_fresh_values_each_time():
    uuid_template = compile_template("{uuid}", {}, set(), None)
    a, b = uuid_template.render(_User()), uuid_template.render(_User())
    assert len(a) == 36 and a != b
    randint = compile_template("{randint:5:7}", {}, set(), None)
    assert {randint.render(_User()) for _ in range(200)} == {"5", "6", "7"}
    assert compile_template("{timestamp}", {}, set(), None).render(_User()).isdigit()


def test_json_bodies_keep_captured_types_and_escape_text():
    body = compile_json({"item": "{item}", "note": 'say "{word}"', "n": 1, "list": ["{seq}"]}, {}, set(), None)
    assert body.render(_User(item=17, word="hi")) == b'{"item":17,"note":"say \\"hi\\"","n":1,"list":["42"]}'
    assert compile_json({"a": [1, "x"]}, {}, set(), None).constant == b'{"a":[1,"x"]}'


def test_secret_values_are_literal_text_even_with_braces(monkeypatch):
    monkeypatch.setenv("RUNNER_TEST_SECRET", "p{a}ss")
    secrets = set()
    compiled = compile_template("/x/${env:RUNNER_TEST_SECRET}/{seq}", {}, secrets, None)
    assert compiled.render(_User()) == "/x/p{a}ss/42" and secrets == {"p{a}ss"}


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
    code = ("import sys, runner.executor, runner.engines.aiohttp_engine, runner.engines.fast, runner.metrics, "
            "runner.plan, runner.vu; "
            "print('pydantic' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_braces_that_are_not_fields_stay_literal_in_headers_and_bodies(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nname: j\ntarget: http://127.0.0.1:9\n"
                    "flow:\n  - {method: POST, path: /a, headers: {X-J: '{\"a\": 1}'}, body: '{\"n\": {seq}, \"x\": {}}'}\n"
                    "stages: [{requests: 1, concurrency: 1}]\n")
    (request,) = compile_scenario(load_scenario(path), path).flow
    assert request.headers == (("X-J", '{"a": 1}'),)
    assert request.body_template.render(_User()) == '{"n": 42, "x": {}}'
