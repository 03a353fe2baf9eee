"""The built-in target over https: a throwaway CA that only the run trusts.

Real child processes and real handshakes on loopback: the target answers
clients that trust its CA, fails those that do not, and leaves no key or
certificate behind; a run against it trusts exactly that CA.
"""

from __future__ import annotations

import http.client
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

from runner.cli import main
from runner.plan import FlowPlan, Plan, RequestPlan, StagePlan, ThinkPlan, TlsPlan
from runner.target.certificate import ThrowawayCertificate, trust_ca
from runner.target.config import TargetConfig
from runner.target.process import BuiltinTarget
from runner.templates import compile_template

REPO = Path(__file__).resolve().parent.parent
HTTPS_SCENARIO = REPO / "scenarios" / "https.yaml"
IO_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def target():
    with BuiltinTarget(TargetConfig(tls=True)) as running:
        yield running


def get(target: BuiltinTarget, path: str, context: ssl.SSLContext, host: str | None = None):
    connection = http.client.HTTPSConnection(host or target.host, target.port, timeout=IO_TIMEOUT_S,
                                             context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def handshake(target: BuiltinTarget, context: ssl.SSLContext, server_name: str) -> ssl.SSLSocket:
    raw = socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def test_serves_https_to_a_client_that_trusts_its_ca(target):
    assert target.url == f"https://127.0.0.1:{target.port}"
    assert target.ca_file is not None and os.path.isfile(target.ca_file)
    trusting = ssl.create_default_context(cafile=target.ca_file)
    status, body = get(target, "/?size=32", trusting)
    assert (status, len(body)) == (200, 32)
    before = target.stats()  # the control requests work over https too
    assert get(target, "/page/1", trusting)[0] == 200
    assert target.stats() == before + 1


def test_offers_http_1_1_by_alpn_and_modern_tls(target):
    context = ssl.create_default_context(cafile=target.ca_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with handshake(target, context, "127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_certificate_names_the_loopback_addresses(target, name):
    with handshake(target, ssl.create_default_context(cafile=target.ca_file), name) as tls:
        assert tls.getpeercert() is not None


def test_certificate_is_for_loopback_only(target):
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname|mismatch"):
        handshake(target, ssl.create_default_context(cafile=target.ca_file), "www.example.test")


def test_a_client_that_does_not_trust_the_ca_fails_verification(target):
    with pytest.raises(ssl.SSLCertVerificationError):
        get(target, "/", ssl.create_default_context())  # the system's CAs only
    other = ThrowawayCertificate()  # another run's CA is no better
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            get(target, "/", ssl.create_default_context(cafile=other.ca_file))
    finally:
        other.remove()


def test_plain_http_to_the_tls_port_gets_no_answer(target):
    connection = http.client.HTTPConnection(target.host, target.port, timeout=IO_TIMEOUT_S)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.request("GET", "/")
            connection.getresponse().read()
    finally:
        connection.close()


def test_files_are_private_and_gone_after_stop():
    running = BuiltinTarget(TargetConfig(tls=True)).start()
    try:
        directory = os.path.dirname(running.ca_file)
        assert os.stat(directory).st_mode & 0o777 == 0o700
        assert sorted(os.listdir(directory)) == ["ca.pem", "server-chain.pem", "server-key.pem"]
        assert os.stat(os.path.join(directory, "server-key.pem")).st_mode & 0o777 == 0o600
    finally:
        assert running.stop() == 0
    assert not os.path.exists(directory)
    assert running.ca_file is None


def test_files_are_gone_when_the_child_fails_to_start(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # A child that dies before announcing its port: the start fails, and takes the key with it.
    failing = BuiltinTarget(TargetConfig(tls=True), startup_timeout_s=IO_TIMEOUT_S)
    monkeypatch.setattr(failing, "_command", lambda: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited with code 3"):
        failing.start()
    assert [p for p in tmp_path.iterdir() if p.name.startswith("runner-tls-")] == []


def test_plain_target_has_no_ca():
    with BuiltinTarget(TargetConfig()) as plain:
        assert plain.url.startswith("http://") and plain.ca_file is None


# -- the plan a run uses ----------------------------------------------------------------------


def _request(index: int, tls: TlsPlan | None) -> RequestPlan:
    return RequestPlan(index, f"r{index}", "GET", "/", compile_template("/", {}, set(), None), (), None, 5.0, True,
                       tls=tls)


def _plan(*tls: TlsPlan | None) -> Plan:
    requests = tuple(_request(index, value) for index, value in enumerate(tls))
    flows = (FlowPlan(0, "first", 1, (requests[0],), (ThinkPlan(0.0, 0.0), *requests[1:3])),
             FlowPlan(1, "second", 1, (), requests[3:]))
    return Plan("s", "s.yaml", None, TargetConfig(tls=True), "auto", requests,
                (StagePlan(0, "only", "closed", 10, None, 1, 1),), (), flows=flows)


def test_trust_ca_sets_the_ca_where_the_system_would_have_been_trusted():
    plan = _plan(None,
                 TlsPlan(min_version="1.3", server_name="localhost"),
                 TlsPlan(verify=False),
                 TlsPlan(ca="/their/ca.pem"),
                 TlsPlan(cert="/c.pem", key="/k.pem"))
    trusted = trust_ca(plan, "/run/ca.pem")
    assert [request.tls for request in trusted.flow] == [
        TlsPlan(ca="/run/ca.pem"),
        TlsPlan(ca="/run/ca.pem", min_version="1.3", server_name="localhost"),  # other settings kept
        TlsPlan(verify=False),  # not verifying stays not verifying
        TlsPlan(ca="/their/ca.pem"),  # a CA the scenario names is what it asked for
        TlsPlan(ca="/run/ca.pem", cert="/c.pem", key="/k.pem"),
    ]
    # The flows run the same (new) requests as plan.flow, in the same places.
    first, second = trusted.flows
    assert first.once == (trusted.flow[0],)
    assert isinstance(first.steps[0], ThinkPlan) and first.steps[1:] == trusted.flow[1:3]
    assert second.steps == trusted.flow[3:] and second.single is False
    assert all(a is b for a, b in zip(second.steps, trusted.flow[3:]))
    assert [request.tls for request in plan.flow][0] is None  # the plan itself is unchanged (frozen)
    assert trusted.builtin == plan.builtin and trusted.stages == plan.stages


def test_trust_ca_leaves_a_plan_with_nothing_to_change_as_it_is():
    plan = _plan(TlsPlan(verify=False), TlsPlan(ca="/their/ca.pem"), TlsPlan(verify=False), TlsPlan(verify=False))
    assert trust_ca(plan, "/run/ca.pem") is plan


def test_the_run_plan_trusts_the_builtin_ca_while_the_target_runs():
    from runner.launch import target_url

    plan = _plan(None, TlsPlan(verify=False), None, None)
    with target_url(plan) as (url, run_plan):
        ca = run_plan.flow[0].tls.ca
        assert url.startswith("https://127.0.0.1:") and os.path.isfile(ca)
        assert run_plan.flow[1].tls == TlsPlan(verify=False)
        host, port = url.removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context(cafile=ca)
        with context.wrap_socket(socket.create_connection((host, int(port)), timeout=IO_TIMEOUT_S),
                                 server_hostname=host):
            pass
    assert not os.path.exists(ca)


# -- runner serve --tls -----------------------------------------------------------------------


def _read_lines_until(process: subprocess.Popen, marker: str, timeout_s: float) -> str:
    """What the process wrote to stderr up to and including the line holding ``marker``."""
    deadline = time.monotonic() + timeout_s
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while marker.encode() not in received or not received.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} within {timeout_s} s: {received!r}"
            if selector.select(remaining):
                data = os.read(process.stderr.fileno(), 4096)
                assert data, f"serve exited with {process.wait(IO_TIMEOUT_S)}: {received!r}"
                received += data
    return received.decode()


def test_serve_tls_prints_the_ca_to_trust_and_removes_it_on_exit():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--tls", "--port", "0",
                                "--body-size", "16"],
                               cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        text = _read_lines_until(process, "CA certificate:", 15.0)
        url_line = next(line for line in text.splitlines() if "built-in target on" in line)
        port = int(url_line.split("https://127.0.0.1:", 1)[1].split("/", 1)[0])
        assert port > 0  # the port it picked, not the 0 it was given
        ca_file = next(line for line in text.splitlines() if line.startswith("CA certificate:")).split()[2]
        assert os.path.isfile(ca_file) and f"--cacert {ca_file}" in text
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=IO_TIMEOUT_S,
                                                 context=ssl.create_default_context(cafile=ca_file))
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            assert (response.status, len(response.read())) == (200, 16)
        finally:
            connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(IO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        process.stderr.close()
    assert code == 0
    assert not os.path.exists(ca_file)


# -- scenarios/https.yaml, end to end ----------------------------------------------------------


@pytest.mark.parametrize("engine, extra", [
    ("aiohttp", []),
    ("fast", []),
    ("fast", ["--set", "workers=2", "--set", "stages.1.requests=1000"]),  # workers read the CA file too
], ids=["aiohttp", "fast", "fast-2-workers"])
def test_https_example_runs_verified_against_the_builtin_target(tmp_path, monkeypatch, engine, extra):
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # where the run's CA goes, to see it removed
    out = tmp_path / "https.json"
    code = main(["run", str(HTTPS_SCENARIO), "--quiet", "--out", f"json={out}", "--set", f"engine={engine}", *extra])
    data = orjson.loads(out.read_bytes())
    totals = data["totals"]
    assert code == 0, data["thresholds"]
    assert data["engine"]["name"] == engine
    assert totals["requests"] == totals["ok"] > 0 and totals["failed"] == 0, totals["errors"]
    by_name = {request["name"]: request for request in data["by_request"]}
    assert set(by_name) == {"page", "handshake"}
    # keepalive: false pays a verified handshake per request; kept connections pay one per user.
    assert by_name["handshake"]["phases_ms"]["tls"]["count"] == by_name["handshake"]["requests"] > 0
    assert 0 < by_name["page"]["phases_ms"]["tls"]["count"] <= 16 < by_name["page"]["requests"]
    assert all(threshold["passed"] for threshold in data["thresholds"])
    assert b"runner-tls-" not in out.read_bytes()  # no temporary path in the artifacts
    assert [p for p in private.iterdir() if p.name.startswith("runner-tls-")] == []
