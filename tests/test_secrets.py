"""Secrets are used on the wire and never appear in any output, in any encoding.

The end-to-end tests make a secret reach every output before scrubbing (a
scenario and a stage named after a credential header's literal value, the
way a careless scenario might quote it), and each has a twin run with
redaction switched off that must then find the secret: a test that passes
whatever redaction does proves nothing.
"""

import ast
import base64
import csv
import html
import io
import json
import os
import textwrap
import xml.etree.ElementTree as ET
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import orjson
import pytest
from aiohttp import web

import runner.secrets
from runner.cli import main
from runner.output import ScrubbedStream
from runner.secrets import MASK, redact

from .conftest import ThreadedServer, write_scenario

SECRET = "s3cr3t-token-0123456789"
#: A literal credential with every character some output escapes: JSON ("), HTML (&<>'), CSV (", and ,),
#: URLs (space / + %).
LITERAL = "sid=\"k&y<1>',2 x/+%z"
#: Exotic characters for the unit tests: non-ASCII, outside the BMP, a control character, a backslash.
EXOTIC = 'p"a&s<s>\'w,o r/d+%é😀\\\n'
OUTPUTS = ("json", "csv", "junit", "html")


def _yaml_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _strings(value) -> list[str]:
    """Every string in a JSON document (keys and values)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _xml_strings(text: str) -> list[str]:
    root = ET.fromstring(text)
    return [s for element in root.iter() for s in [element.text or "", *element.attrib.values()]]


#: Each output as the text a reader of it sees: escaping undone.
DECODED = {
    "console": lambda text: [text],
    "json": lambda text: _strings(orjson.loads(text)),
    "csv": lambda text: [cell for row in csv.reader(io.StringIO(text)) for cell in row],
    "junit": _xml_strings,
    "html": lambda text: [html.unescape(text)],
}


def _switch_off_redaction(monkeypatch) -> None:
    monkeypatch.setattr(runner.secrets, "redact", lambda data, secrets: data)


@pytest.mark.parametrize("redaction", ["on", "off"])
def test_a_secret_that_reaches_every_output_is_scrubbed_from_each(tmp_path, monkeypatch, capsys, redaction):
    seen = []

    async def handle(request):
        seen.append((request.headers.get("Authorization"), request.query.get("key")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    monkeypatch.setenv("RUNNER_SECRET", SECRET)
    if redaction == "off":
        _switch_off_redaction(monkeypatch)
    with ThreadedServer(app) as server:
        scenario = write_scenario(tmp_path, f"""\
version: 1
name: {_yaml_quoted("checkout as " + LITERAL)}
target: {server.url}
defaults:
  headers:
    Authorization: "Bearer ${{env:RUNNER_SECRET}}"
flow:
  - path: "/api?key=${{env:RUNNER_SECRET}}"
  - path: /plain
    headers: {{X-API-Key: {_yaml_quoted(LITERAL)}}}
stages: [{{name: {_yaml_quoted(LITERAL)}, requests: 20, concurrency: 2}}]
""")
        outputs = {name: tmp_path / f"out.{name}" for name in OUTPUTS}
        args = ["run", str(scenario)]
        for name, path in outputs.items():
            args += ["--out", f"{name}={path}"]
        code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(seen) == 20 and set(seen) == {(f"Bearer {SECRET}", SECRET), (f"Bearer {SECRET}", None)}
    texts = {"console": captured.out, **{name: path.read_text() for name, path in outputs.items()}}
    for name, text in texts.items():
        readable = DECODED[name](text)
        if redaction == "on":
            assert not any(LITERAL in s or SECRET in s for s in readable), name
            assert LITERAL not in text and MASK in text, name
        else:
            assert any(LITERAL in s for s in readable), f"the secret never reached the {name} output"
    if redaction == "on":
        assert SECRET not in captured.err and LITERAL not in captured.err
    else:  # stderr is one more output it reaches: the live view's line at the stage's end names the stage
        assert LITERAL in captured.err


def _install_plugin_that_quotes_the_stage(root, monkeypatch) -> None:
    """A real installed reporter whose bug raises with the stage name in the message (exit 70 with a trace)."""
    (root / "quoting_reporter.py").write_text(textwrap.dedent('''
        class QuotingReporter:
            name = "quoting"

            def render(self, result):
                raise ValueError(f"cannot draw stage {result['stages'][0]['name']!r}")
    '''))
    info = root / "quoting_reporter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quoting-reporter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[runner.reporters]\nquoting = quoting_reporter:QuotingReporter\n")
    monkeypatch.syspath_prepend(str(root))


@pytest.mark.parametrize("redaction", ["on", "off"])
def test_what_the_run_prints_on_stderr_is_scrubbed(tmp_path, monkeypatch, capsys, builtin_target, redaction):
    plugin_dir = tmp_path / "site"
    plugin_dir.mkdir()
    _install_plugin_that_quotes_the_stage(plugin_dir, monkeypatch)
    if redaction == "off":
        _switch_off_redaction(monkeypatch)
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: stderr
target: {builtin_target.url}
flow: [{{path: /, headers: {{Cookie: {_yaml_quoted(LITERAL)}}}}}]
stages: [{{name: {_yaml_quoted(LITERAL)}, requests: 5, concurrency: 1}}]
""")
    code = main(["run", str(scenario), "--quiet", "--out", f"quoting={tmp_path / 'never.txt'}"])
    err = capsys.readouterr().err
    assert code == 70 and "Traceback" in err and "ValueError: cannot draw stage" in err
    if redaction == "on":
        assert "cannot draw stage '***'" in err
        assert LITERAL not in err and repr(LITERAL)[1:-1] not in err
    else:
        assert repr(LITERAL)[1:-1] in err


def test_scrubbed_stream_sees_a_secret_written_in_pieces():
    sink = io.StringIO()
    stream = ScrubbedStream(sink, (SECRET,))
    print("error: token", SECRET[:5], file=stream, end="")
    stream.write(SECRET[5:] + " rejected\n")
    stream.write("\r\x1b[2Kstage " + SECRET)
    stream.flush()
    assert sink.getvalue() == "error: token *** rejected\n\r\x1b[2Kstage ***"


def _xml_attribute(text: str) -> str:
    return ET.tostring(ET.Element("e", value=text), encoding="unicode")


def _xml_text(text: str) -> str:
    element = ET.Element("e")
    element.text = text
    return ET.tostring(element, encoding="unicode")


def _csv_row(text: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([text])
    return buffer.getvalue()


#: (encode, decode) of every form a reporter, an HTTP library or an exception message gives text.
ENCODINGS = {
    "raw": (str, str),
    "json": (json.dumps, json.loads),
    "json_non_ascii": (lambda t: json.dumps(t, ensure_ascii=False), json.loads),
    "orjson": (lambda t: orjson.dumps(t).decode(), orjson.loads),
    "html": (html.escape, html.unescape),
    "html_text": (lambda t: html.escape(t, quote=False), html.unescape),
    "xml_attribute": (_xml_attribute, lambda x: ET.fromstring(x).get("value")),
    "xml_text": (_xml_text, lambda x: ET.fromstring(x).text),
    "csv": (_csv_row, lambda x: next(csv.reader(io.StringIO(x)))[0]),
    "quote": (quote, unquote),
    "quote_no_safe": (lambda t: quote(t, safe=""), unquote),
    "quote_plus": (quote_plus, unquote_plus),
    "repr": (repr, ast.literal_eval),
    "json_in_html": (lambda t: html.escape(json.dumps(t)), lambda x: json.loads(html.unescape(x))),
    "url_in_json": (lambda t: json.dumps(quote(t)), lambda x: unquote(json.loads(x))),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("secret", [EXOTIC, LITERAL])
def test_redact_finds_the_secret_in_every_encoding(encoding, secret):
    encode, decode = ENCODINGS[encoding]
    written = encode(f"before {secret} after").encode()
    assert decode(redact(written, [secret]).decode()) == f"before {MASK} after"


def test_redact_finds_the_base64_of_user_and_password():
    header = "Basic " + base64.b64encode(f"admin:{EXOTIC}".encode()).decode()
    assert redact(header.encode(), [f"admin:{EXOTIC}"]) == f"Basic {MASK}".encode()


def test_redact_leaves_text_without_secrets_alone():
    text = json.dumps({"name": "checkout", "p99": 12.5, "note": "a \"quoted\" & <escaped> text"}).encode()
    assert redact(text, [SECRET, LITERAL, EXOTIC]) == text


# -- too short to scrub --------------------------------------------------------------------------

@pytest.mark.parametrize("place, expected", [
    ('defaults: {headers: {Authorization: "Bearer ${env:RUNNER_SHORT}"}}\nflow: [{path: /}]',
     ":4:22: defaults.headers.Authorization: the value of ${env:RUNNER_SHORT} is shorter than 4 characters"),
    ("flow: [{path: /, headers: {Cookie: a=1}}]",
     ":4:28: flow[0].headers.Cookie: the Cookie header value is shorter than 4 characters"),
    ('flow: [{path: "/x/${env:RUNNER_SHORT}"}]',
     ":4:9: flow[0].path: the value of ${env:RUNNER_SHORT} is shorter than 4 characters"),
])
def test_a_secret_too_short_to_scrub_is_a_located_error(tmp_path, monkeypatch, capsys, place, expected):
    monkeypatch.setenv("RUNNER_SHORT", "ab")
    scenario = write_scenario(tmp_path, f"version: 1\nname: short\ntarget: builtin\n{place}\n"
                                        "stages: [{requests: 1, concurrency: 1}]\n")
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}{expected}" in err and "Traceback" not in err


def test_a_target_password_too_short_to_scrub_is_a_located_error(tmp_path, capsys):
    scenario = write_scenario(tmp_path, "version: 1\nname: short\ntarget: http://admin:pw@127.0.0.1:9\n"
                                        "flow: [{path: /}]\nstages: [{requests: 1, concurrency: 1}]\n")
    assert main(["run", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:3:1: target: the password in the target URL is shorter than 4 characters" in err
    assert "admin:pw" not in err


def test_missing_secret_is_a_located_error_without_a_value(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RUNNER_SURELY_UNSET_VARIABLE", raising=False)
    scenario = write_scenario(tmp_path, """\
version: 1
name: secret
target: builtin
defaults:
  headers: {Authorization: "Bearer ${env:RUNNER_SURELY_UNSET_VARIABLE}"}
flow: [{path: /}]
stages: [{requests: 1, concurrency: 1}]
""")
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:5:" in err
    assert "environment variable RUNNER_SURELY_UNSET_VARIABLE is not set" in err


# -- a secret value is data, never a template ------------------------------------------------------

@pytest.mark.parametrize("engine", ["fast", "aiohttp"])
def test_braces_in_a_secret_used_in_a_path_are_sent_as_is(tmp_path, monkeypatch, capsys, counting_server, engine):
    value = "tok{x}en-{seq}-1234"
    monkeypatch.setenv("RUNNER_PATH_SECRET", value)
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: braces
target: {counting_server.url}
engine: {engine}
flow: [{{path: "/item/{{seq}}/${{env:RUNNER_PATH_SECRET}}"}}]
stages: [{{requests: 4, concurrency: 1}}]
""")
    out = tmp_path / "result.json"
    code = main(["run", str(scenario), "--quiet", "--out", f"json={out}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    paths = {path for path in counting_server.counter if path != "__all__"}
    assert paths == {f"/item/{seq}/{value}" for seq in range(4)}
    assert value not in out.read_text() and value not in captured.err


# -- credentials in the target URL -----------------------------------------------------------------

PASSWORD = 'p@ss w"rd'
WRITTEN = "p%40ss%20w%22rd"  # as a URL must carry it


@pytest.mark.parametrize("engine", ["fast", "aiohttp"])
@pytest.mark.parametrize("given_by", ["file", "--target"])
def test_target_url_credentials_become_basic_auth_and_never_reach_a_report(tmp_path, capsys, engine, given_by):
    seen = []

    async def handle(request):
        seen.append((request.path, request.headers.get("Authorization")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    with ThreadedServer(app) as server:
        with_credentials = server.url.replace("http://", f"http://admin:{WRITTEN}@") + "/base"
        scenario = write_scenario(tmp_path, f"""\
version: 1
name: credentials
target: {with_credentials if given_by == "file" else "http://placeholder.invalid"}
engine: {engine}
flow:
  - path: /anyone
  - path: /own
    headers: {{Authorization: "Bearer own-token-1234"}}
stages: [{{requests: 10, concurrency: 2}}]
""")
        outputs = {name: tmp_path / f"out.{name}" for name in OUTPUTS}
        args = ["run", str(scenario)] + (["--target", with_credentials] if given_by == "--target" else [])
        for name, path in outputs.items():
            args += ["--out", f"{name}={path}"]
        code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    basic = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert sorted(set(seen)) == [("/base/anyone", basic), ("/base/own", "Bearer own-token-1234")]
    assert orjson.loads(outputs["json"].read_bytes())["target"] == server.url + "/base"
    for text in [captured.out, captured.err] + [path.read_text() for path in outputs.values()]:
        for leaked in (WRITTEN, PASSWORD, basic[6:], "admin:"):
            assert leaked not in text


def test_the_fast_engine_given_a_url_with_credentials_sends_them():
    """Plans not built by the compiler (library use) get the same Basic header instead of a refusal."""
    import asyncio

    from runner.compile import compile_scenario
    from runner.engines.fast import FastEngine
    from runner.schemas.scenario import Scenario

    plan = compile_scenario(Scenario.model_validate({
        "version": 1, "name": "lib", "target": "http://127.0.0.1:9",
        "flow": [{"path": "/lib"}], "stages": [{"requests": 1, "concurrency": 1}]}))
    seen = []

    async def handle(request):
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)

    async def send_one(url):
        engine = FastEngine(plan, url)
        try:
            channel = await engine.open_channel(0)
            return await channel.send(plan.flow[0], 0, 0)
        finally:
            await engine.aclose()

    with ThreadedServer(app) as server:
        status, _ = asyncio.run(send_one(server.url.replace("http://", "http://lib:secret-1234@")))
    assert status == 200
    assert seen == ["Basic " + base64.b64encode(b"lib:secret-1234").decode()]


def test_an_unreadable_secret_file_is_a_located_error(tmp_path, capsys):
    (tmp_path / "token.bin").write_bytes(b"\xff\xfe not utf-8")
    scenario = write_scenario(tmp_path, """\
version: 1
name: secret
target: builtin
flow: [{path: /, headers: {X-API-Key: "${file:token.bin}"}}]
stages: [{requests: 1, concurrency: 1}]
""")
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:4:" in err and "secret file token.bin cannot be read as UTF-8 text" in err
    assert "Traceback" not in err
