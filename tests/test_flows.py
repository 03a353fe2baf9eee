"""Virtual users on real servers: flows, captures, cookies, data files, think time, weights.

Every scenario runs against the built-in target's shop API (or a counting
aiohttp server) on loopback, on both engines where the behaviour must agree.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from runner.cli import main

from .conftest import ThreadedServer

ENGINES = ("fast", "aiohttp")
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def run(tmp_path: Path, text: str, *extra: str, expect: int = 0) -> dict:
    scenario = tmp_path / "flow.yaml"
    scenario.write_text(text)
    out = tmp_path / "result.json"
    code = main(["run", str(scenario), "--quiet", "--out", f"json={out}", *extra])
    assert code == expect
    return orjson.loads(out.read_bytes())


def users_csv(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "users.csv"
    path.write_text("user,password\n" + "".join(f"u{i:03d},pw-u{i:03d}\n" for i in range(count)))
    return path


def path_counting_app(seen: Counter) -> web.Application:
    """A server that answers every GET with "ok" and counts the paths it was asked for."""
    async def handle(request: web.Request) -> web.Response:
        seen[request.path] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def step(result: dict, name: str) -> dict:
    return next(block for block in result["by_request"] if block["name"] == name)


def assert_counts_add_up(block: dict) -> None:
    assert block["requests"] == block["ok"] + block["failed"]
    answered = sum(block["status_codes"].values())
    unanswered = sum(n for cls, n in block["errors"].items() if cls != "capture_failed")
    assert block["requests"] == answered + unanswered


SHOP = """\
version: 1
name: shop
target: builtin
engine: {engine}
data:
  users: {{file: users.csv, mode: unique, per: vu}}
flows:
  - name: shopper
    once:
      - name: login
        method: POST
        path: /login
        json: {{user: "{{users.user}}", password: "{{users.password}}"}}
        checks: {{status: 200}}
        capture: {{token: {{json: $.token}}}}
    steps:
      - name: items
        path: /items
        headers: {{Authorization: "Bearer {{token}}"}}
        capture: {{item: {{json: "$.items[0].id"}}}}
      - think: {think}
      - name: add
        method: POST
        path: /cart
        headers: {{Authorization: "Bearer {{token}}"}}
        json: {{item: "{{item}}"}}
        checks: {{status: 201}}
      - name: cart
        path: /cart
        headers: {{Authorization: "Bearer {{token}}"}}
        checks: {{status: 200, json: {{"$.cart": {{exists: true}}}}}}
stages:
  - {{requests: {requests}, concurrency: {concurrency}}}
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_login_once_then_loop_with_captured_token_and_item(tmp_path, engine):
    users_csv(tmp_path, 10)
    result = run(tmp_path, SHOP.format(engine=engine, think="0s", requests=4 + 3 * 30, concurrency=4))
    assert result["engine"]["name"] == engine
    login, items, add, cart = (step(result, n) for n in ("login", "items", "add", "cart"))
    assert login["requests"] == 4 and login["ok"] == 4  # once per virtual user
    # the request budget may end each user's last iteration part-way
    assert items["requests"] >= add["requests"] >= cart["requests"] >= items["requests"] - 4
    for block in (login, items, add, cart, result["totals"]):
        assert_counts_add_up(block)
        assert block["failed"] == 0 and block["skipped"] == 0
    # the captured item id was one of this user's items
    assert add["status_codes"] == {"201": add["requests"]}
    (flow,) = result["by_flow"]
    assert flow["name"] == "shopper" and flow["iterations"] == cart["requests"] and flow["iterations_failed"] == 0
    assert flow["requests"] == result["totals"]["requests"] == 94
    assert result["data"] == [{"name": "users", "file": str(tmp_path / "users.csv"), "rows": 10,
                               "mode": "unique", "per": "vu", "used": 4, "exhausted": False}]


def test_both_engines_have_the_same_effects_on_the_server(tmp_path):
    users_csv(tmp_path, 3)
    summaries = {}
    for engine in ENGINES:
        result = run(tmp_path, SHOP.format(engine=engine, think="0s", requests=1 + 3 * 12, concurrency=1))
        summaries[engine] = [(b["name"], b["requests"], b["status_codes"], b["errors"], b["bytes"])
                             for b in result["by_request"]]
    assert summaries["fast"] == summaries["aiohttp"]


def test_think_time_is_part_of_the_iteration_duration(tmp_path):
    users_csv(tmp_path, 2)
    result = run(tmp_path, SHOP.format(engine="fast", think="100ms", requests=1 + 3 * 4, concurrency=1))
    (flow,) = result["by_flow"]
    assert flow["iterations"] == 4
    assert flow["iteration_duration_ms"]["min"] >= 99.0
    assert result["totals"]["latency_ms"]["max"] < 100.0  # think time is not request latency


CAPTURE_MISS = """\
version: 1
name: capture-miss
target: builtin
engine: {engine}
flows:
  - name: broken
    steps:
      - name: first
        path: /items
        capture: {{token: {{json: $.nothing.here}}}}
      - name: second
        path: "/page/{{token}}"
      - name: third
        path: /page/x
stages:
  - {{requests: 10, concurrency: 1}}
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_capture_that_finds_nothing_fails_the_step_and_skips_the_rest(tmp_path, engine):
    result = run(tmp_path, CAPTURE_MISS.format(engine=engine))
    first, second, third = (step(result, n) for n in ("first", "second", "third"))
    assert first["requests"] == 10 and first["failed"] == 10
    assert first["errors"] == {"capture_failed": 10} and first["status_codes"] == {"401": 10}
    assert second["requests"] == third["requests"] == 0
    assert second["skipped"] == third["skipped"] == 10
    assert result["totals"]["skipped"] == 20
    assert "capture_failed" in result["totals"]["error_samples"]
    (flow,) = result["by_flow"]
    assert flow["iterations"] == 10 and flow["iterations_failed"] == 10


COOKIES = """\
version: 1
name: cookies
target: builtin
engine: {engine}
defaults: {{cookies: {cookies}}}
data:
  users: {{file: users.csv, mode: unique}}
flows:
  - name: session
    once:
      - name: login
        method: POST
        path: /login
        json: {{user: "{{users.user}}", password: "{{users.password}}"}}
    steps:
      - name: whoami
        path: /whoami
        capture: {{me: {{json: $.user}}}}
      # logging in as "me" with this user's own password succeeds only if the cookie was this user's
      - name: same user
        method: POST
        path: /login
        json: {{user: "{{me}}", password: "pw-{{users.user}}"}}
        checks: {{status: 200}}
stages:
  - {{requests: {requests}, concurrency: 8}}
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_each_user_keeps_its_own_cookies(tmp_path, engine):
    users_csv(tmp_path, 8)
    result = run(tmp_path, COOKIES.format(engine=engine, cookies="true", requests=8 + 2 * 40))
    whoami, same = step(result, "whoami"), step(result, "same user")
    assert whoami["status_codes"] == {"200": whoami["requests"]} and whoami["requests"] >= 40
    assert same["requests"] >= 36 and same["ok"] == same["requests"]  # never another user's session


def test_without_a_cookie_jar_the_session_is_not_sent(tmp_path):
    users_csv(tmp_path, 2)
    result = run(tmp_path, COOKIES.format(engine="fast", cookies="false", requests=2 + 2 * 4).replace(
        "concurrency: 8", "concurrency: 2"), expect=0)
    whoami = step(result, "whoami")
    # a capture failing in the loop does not undo the once part: each user logged in once
    assert step(result, "login")["requests"] == 2
    assert whoami["status_codes"] == {"401": 8} and whoami["errors"] == {"capture_failed": 8}
    assert step(result, "same user")["skipped"] == 8


UNIQUE = """\
version: 1
name: unique
target: {target}
workers: {workers}
data:
  users: {{file: users.csv, mode: unique, per: iteration}}
flows:
  - name: once-each
    steps:
      - name: row
        path: "/row/{{users.user}}"
stages:
  - {{requests: 1000, concurrency: 4}}
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_unique_rows_are_used_once_across_users_and_processes(tmp_path, workers):
    users_csv(tmp_path, 9)
    seen: Counter = Counter()
    with ThreadedServer(path_counting_app(seen)) as server:
        result = run(tmp_path, UNIQUE.format(target=server.url, workers=workers))
    assert sorted(seen) == [f"/row/u{i:03d}" for i in range(9)]
    assert set(seen.values()) == {1}
    assert result["totals"]["requests"] == 9  # the stage stopped when the rows ran out
    assert result["data"][0]["used"] == 9 and result["data"][0]["exhausted"] is True


WEIGHTED = """\
version: 1
name: weighted
target: builtin
flows:
  - name: browse
    weight: 3
    steps: [{name: browse page, path: "/browse/{seq}"}]
  - name: buy
    weight: 1
    steps: [{name: buy page, path: "/buy/{seq}"}]
stages:
  - {duration: 1s, concurrency: 8}
  - {rate: 400/s, duration: 1s}
"""


def test_flows_mix_by_weight_in_both_models(tmp_path):
    result = run(tmp_path, WEIGHTED)
    closed, opened = result["stages"]
    flows = {f["name"]: f for f in closed["by_flow"]}
    ratio = flows["browse"]["iterations"] / flows["buy"]["iterations"]
    assert 2.4 < ratio < 3.6  # 6 of the 8 users browse
    arrivals = {f["name"]: f["iterations"] + f["dropped"] for f in opened["by_flow"]}
    assert arrivals == {"browse": 300, "buy": 100}  # arrival n runs flow cycle[n % 4]


OPEN_FLOW = """\
version: 1
name: open-flow
target: builtin
flows:
  - name: two-steps
    steps:
      - {name: one, path: /a}
      - {name: two, path: /b}
stages:
  - {rate: 300/s, duration: 1s, max_in_flight: 50}
"""


def test_open_model_runs_one_iteration_per_arrival(tmp_path):
    result = run(tmp_path, OPEN_FLOW)
    (stage,) = result["stages"]
    (flow,) = stage["by_flow"]
    assert stage["rate"]["scheduled"] == 300
    assert flow["iterations"] + flow["dropped"] == 300
    assert step(result, "one")["requests"] == step(result, "two")["requests"] == flow["iterations"]


def test_the_example_login_flow_runs_as_shipped(tmp_path):
    out = tmp_path / "login.json"
    code = main(["run", str(SCENARIOS / "login-flow.yaml"), "--quiet", "--out", f"json={out}",
                 "--set", "stages.0.duration=2s", "--set", "stages.0.concurrency=10"])
    result = orjson.loads(out.read_bytes())
    assert code == 0, result["thresholds"]
    assert step(result, "login")["requests"] == 10
    assert step(result, "add to cart")["status_codes"] == {"201": step(result, "add to cart")["requests"]}
    assert result["by_flow"][0]["iterations"] > 10


@pytest.mark.parametrize("body, message", [
    ("path: /x/{tokn}", "template field '{tokn}' is not defined"),
    ("path: /x/{users.nmae}", "data table 'users' has no column 'nmae'"),
    ("path: /x\n        headers: {A: '{later}'}", "template field '{later}' is not defined"),
])
def test_undefined_template_fields_are_load_time_errors(tmp_path, capsys, body, message):
    users_csv(tmp_path, 2)
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(f"""\
version: 1
name: bad
target: builtin
data: {{users: {{file: users.csv}}}}
flows:
  - name: f
    steps:
      - name: s
        {body}
      - name: t
        path: /t
        capture: {{later: status}}
stages: [{{requests: 1, concurrency: 1}}]
""")
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{scenario}:" in err and "Traceback" not in err


def test_data_file_problems_point_at_their_line(tmp_path, capsys):
    (tmp_path / "users.csv").write_text("user,password\nann,pw-ann\nbob\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\nname: d\ntarget: builtin\ndata: {users: {file: users.csv}}\n"
                        "flows: [{name: f, steps: [{path: '/{users.user}'}]}]\nstages: [{requests: 1, concurrency: 1}]\n")
    assert main(["validate", str(scenario)]) == 2
    assert f"{tmp_path / 'users.csv'}:3" in capsys.readouterr().err
    (tmp_path / "users.csv").unlink()
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:4" in err and "data.users.file" in err


def test_the_cookie_jar_reads_set_cookie_from_the_raw_head_in_any_case():
    from runner.engines.fast.protocol import _set_cookies

    head = (b"HTTP/1.1 200 OK\r\nSET-COOKIE: a=1; Path=/\r\nContent-Length: 2\r\n"
            b"set-cookie: b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\nok")
    assert _set_cookies([head[:30], head[30:]]) == {
        "set-cookie": "a=1; Path=/\nb=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT"}
    assert _set_cookies([b"HTTP/1.1 200 OK\r\nX-Set-Cookie-Note: no\r\n\r\nset-cookie: c=3\r\n"]) == {}


EXHAUSTING = """\
version: 1
name: exhausting
target: builtin
data:
  codes: {{file: codes.csv, mode: unique, per: iteration}}
flows:
  - name: signup
    steps: [{{name: signup, path: "/signup/{{codes.code}}"}}]
  - name: browse
    steps: [{{name: browse, path: "/browse/{{seq}}"}}]
stages:
{stages}
"""


def test_a_table_running_out_stops_only_the_users_that_need_it_closed(tmp_path):
    (tmp_path / "codes.csv").write_text("code\nc1\nc2\n")
    stages = "\n".join(f"  - {{name: s{i}, requests: 300, concurrency: 4}}" for i in range(3))
    result = run(tmp_path, EXHAUSTING.format(stages=stages))
    # the signup users stop (no code left) while the browse users still spend every stage's budget
    assert [stage["requests"] for stage in result["stages"]] == [300, 300, 300]
    assert step(result, "signup")["requests"] == 2
    assert result["totals"]["requests"] == step(result, "signup")["requests"] + step(result, "browse")["requests"]
    assert result["data"][0]["exhausted"] is True


def test_a_table_running_out_drops_only_that_flows_arrivals_open(tmp_path):
    (tmp_path / "codes.csv").write_text("code\nc1\nc2\n")
    result = run(tmp_path, EXHAUSTING.format(stages="  - {rate: 200/s, duration: 1s, max_in_flight: 10}"))
    (stage,) = result["stages"]
    flows = {f["name"]: f for f in stage["by_flow"]}
    assert stage["rate"]["scheduled"] == 200
    assert sum(f["iterations"] + f["dropped"] for f in flows.values()) == 200  # every arrival accounted for
    assert flows["signup"]["iterations"] == 2 and flows["signup"]["dropped"] == 98
    assert flows["browse"]["dropped"] == 0 and flows["browse"]["iterations"] == 100


def test_a_ramp_with_a_request_budget_ends_when_the_budget_is_spent(tmp_path):
    result = run(tmp_path, """\
version: 1
name: ramp-budget
target: builtin
flow: [{path: /r}]
stages: [{requests: 200, duration: 4s, concurrency: {from: 1, to: 50}}]
""")
    (stage,) = result["stages"]
    assert stage["requests"] == 200 and stage["duration_s"] < 2.0


def test_seq_is_unique_across_processes_in_a_duration_stage(tmp_path):
    seen: Counter = Counter()
    with ThreadedServer(path_counting_app(seen)) as server:
        result = run(tmp_path, f"""\
version: 1
name: seq-unique
target: {server.url}
workers: 2
flow: [{{path: "/s/{{seq}}"}}]
stages: [{{duration: 1s, concurrency: 4}}]
""")
    assert result["totals"]["requests"] == sum(seen.values()) > 0
    assert max(seen.values()) == 1  # no {seq} sent twice


def test_both_engines_send_the_same_header_names(tmp_path):
    names = {}
    for engine in ENGINES:
        got: list = []

        async def handle(request: web.Request) -> web.Response:
            got.append(tuple(sorted(k.lower() for k in request.headers)))
            return web.json_response({"ok": 1})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        with ThreadedServer(app) as server:
            run(tmp_path, f"""\
version: 1
name: header-names
target: {server.url}
engine: {engine}
flow:
  - {{path: /a}}
  - {{method: POST, path: /b, body: raw}}
  - {{method: POST, path: /c, json: {{x: 1}}}}
stages: [{{requests: 3, concurrency: 1}}]
""")
        names[engine] = got
    assert names["fast"] == names["aiohttp"]
    assert all("accept-encoding" not in n for n in names["fast"])


def test_an_open_stage_is_timed_from_its_time_zero_not_from_connecting_its_users(tmp_path):
    result = run(tmp_path, """\
version: 1
name: connect-ahead
target: builtin
flow: [{path: /z}]
stages: [{rate: 200/s, duration: 1s, max_in_flight: 2000}]
""")
    (stage,) = result["stages"]
    assert stage["requests"] == 200
    assert stage["duration_s"] < 1.25  # 2000 users connected first; that time is not the stage's
    assert stage["rps"] > 160


def test_the_cookie_scan_reads_the_final_head_after_an_interim_response():
    from runner.engines.fast.protocol import _set_cookies

    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=9\r\nContent-Length: 0\r\n\r\n")
    assert _set_cookies([raw]) == {"set-cookie": "sid=9"}


def test_a_once_part_whose_capture_fails_runs_again_on_the_next_iteration(tmp_path):
    result = run(tmp_path, """\
version: 1
name: bad-login
target: builtin
flows:
  - name: f
    once:
      - {name: login, method: POST, path: /login, json: {user: ann, password: wrong},
         capture: {token: {json: $.token}}}
    steps:
      - {name: items, path: /items, headers: {Authorization: "Bearer {token}"}}
stages: [{requests: 6, concurrency: 1}]
""")
    login, items = step(result, "login"), step(result, "items")
    assert login["requests"] == 6 and login["status_codes"] == {"401": 6}  # tried again every iteration
    assert items["requests"] == 0 and items["skipped"] == 6
