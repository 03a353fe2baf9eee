"""The scenario side of ``tls:`` and ``keepalive:``: schema, load-time file checks, the compiled plan, the dry run.

Certificates are real ones, made by trustme into the test's directory; every
mistake is checked through the CLI (``runner validate``): exit 2, the
file:line of the field, the field's path, and never a traceback or a byte of
key material. Nothing here opens a socket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from runner.cli import main
from runner.compile import compile_scenario
from runner.loader import load_scenario
from runner.plan import TlsPlan
from runner.schemas.export import render_schemas

from .conftest import REPO

STAGES = "stages:\n  - requests: 1\n    concurrency: 1\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A directory with a CA, a client certificate and key, another key, and the pair in one file."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    client = ca.issue_cert("client.example.com")
    stranger = ca.issue_cert("stranger.example.com")
    (directory / "certs").mkdir()
    ca.cert_pem.write_to_path(str(directory / "certs" / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(directory / "certs" / "client.pem"))
    client.private_key_pem.write_to_path(str(directory / "certs" / "client.key"))
    stranger.private_key_pem.write_to_path(str(directory / "certs" / "stranger.key"))
    client.private_key_and_cert_chain_pem.write_to_path(str(directory / "certs" / "both.pem"))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    for name, form in (("encrypted.key", serialization.PrivateFormat.PKCS8),
                       ("encrypted-traditional.key", serialization.PrivateFormat.TraditionalOpenSSL)):
        (directory / "certs" / name).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"passphrase")))
    return directory


def scenario(directory: Path, body: str, *, target: str = "https://127.0.0.1:8443", name: str = "s.yaml") -> Path:
    """A scenario file in ``directory``: ``body`` holds defaults and flow, written at line 4 onwards."""
    path = directory / name
    path.write_text(f"version: 1\nname: tls\ntarget: {target}\n{body}{STAGES}")
    return path


def validate(path: Path, capsys, *extra: str) -> str:
    """``runner validate PATH``: assert exit 2 without a traceback, return stderr."""
    code = main(["validate", str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


def key_material(path: Path) -> list[str]:
    """Lines of base64 inside a PEM file: none of them may ever appear in a message."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith(("-----", "Proc-", "DEK-"))]


# -- valid settings compile into the plan -------------------------------------------------------


def test_settings_merge_field_by_field_with_absolute_paths(pki, monkeypatch, tmp_path):
    path = scenario(pki, "defaults:\n  tls:\n    ca: certs/ca.pem\n    cert: certs/client.pem\n"
                         "    key: certs/client.key\n    min_version: 1.2\n"
                         "flow:\n  - name: inherits\n    path: /a\n"
                         "  - name: overrides\n    path: /b\n"
                         "    tls: {verify: false, min_version: '1.3', server_name: api.example.com}\n"
                         "  - name: own-pair\n    path: /c\n    tls: {cert: certs/both.pem, key: null}\n")
    monkeypatch.chdir(tmp_path)  # paths start at the scenario's directory, not the current one
    plan = compile_scenario(load_scenario(path), path)
    certs = str(pki / "certs")
    inherits, overrides, own_pair = plan.flow
    assert inherits.tls == TlsPlan(verify=True, ca=f"{certs}/ca.pem", cert=f"{certs}/client.pem",
                                   key=f"{certs}/client.key", server_name=None, min_version="1.2")
    assert overrides.tls == TlsPlan(verify=False, ca=f"{certs}/ca.pem", cert=f"{certs}/client.pem",
                                    key=f"{certs}/client.key", server_name="api.example.com", min_version="1.3")
    assert own_pair.tls == TlsPlan(ca=f"{certs}/ca.pem", cert=f"{certs}/both.pem", key=None, min_version="1.2")
    assert all(os.path.isabs(p) for r in plan.flow for p in (r.tls.ca, r.tls.cert))


def test_a_relative_scenario_path_still_gives_absolute_tls_paths(pki, monkeypatch):
    scenario(pki, "flow:\n  - path: /\n    tls: {ca: certs/ca.pem}\n")
    monkeypatch.chdir(pki)
    plan = compile_scenario(load_scenario("s.yaml"), "s.yaml")
    assert plan.flow[0].tls.ca == str(pki / "certs" / "ca.pem")


def test_no_tls_block_anywhere_means_no_tls_plan(tmp_path):
    path = scenario(tmp_path, "flow:\n  - path: /\n  - path: /b\n    keepalive: false\n")
    plan = compile_scenario(load_scenario(path), path)
    assert [r.tls for r in plan.flow] == [None, None]
    assert [r.keepalive for r in plan.flow] == [True, False]
    assert plan.builtin.tls is False


def test_an_empty_defaults_block_and_a_request_block_alone(tmp_path):
    path = scenario(tmp_path, "defaults:\n  tls: {}\nflow:\n  - path: /\n  - path: /b\n    tls: {verify: false}\n")
    assert [r.tls for r in compile_scenario(load_scenario(path), path).flow] == [TlsPlan(), TlsPlan(verify=False)]
    path = scenario(tmp_path, "flow:\n  - path: /\n  - path: /b\n    tls: {min_version: 1.3}\n")
    assert [r.tls for r in compile_scenario(load_scenario(path), path).flow] == [None, TlsPlan(min_version="1.3")]


def test_keepalive_default_and_per_request_override(tmp_path):
    path = scenario(tmp_path, "defaults:\n  keepalive: false\nflow:\n  - path: /a\n"
                              "  - path: /b\n    keepalive: true\n  - path: /c\n    keepalive: false\n")
    assert [r.keepalive for r in compile_scenario(load_scenario(path), path).flow] == [False, True, False]


def test_builtin_tls_reaches_the_target_config(tmp_path):
    path = scenario(tmp_path, "builtin:\n  tls: true\nflow:\n  - path: /\n", target="builtin")
    assert compile_scenario(load_scenario(path), path).builtin.tls is True


@pytest.mark.parametrize("written, expected", [("1.2", "1.2"), ("'1.2'", "1.2"), ("1.3", "1.3"), ("1.30", "1.3")])
def test_min_version_as_number_or_text(tmp_path, written, expected):
    path = scenario(tmp_path, f"defaults:\n  tls:\n    min_version: {written}\nflow:\n  - path: /\n")
    assert compile_scenario(load_scenario(path), path).flow[0].tls.min_version == expected


# -- mistakes: exit 2, file:line, field, no traceback -------------------------------------------


def test_missing_files_are_named_with_where_they_were_looked_for(pki, capsys):
    path = scenario(pki, "defaults:\n  tls:\n    ca: certs/nope-ca.pem\n"
                         "flow:\n  - path: /\n    tls:\n      cert: nope/client.pem\n      key: certs/client.key\n")
    err = validate(path, capsys)
    assert f"{path}:6:5: defaults.tls.ca: file not found: 'certs/nope-ca.pem'" in err
    assert str(pki / "certs" / "nope-ca.pem") in err
    assert f"{path}:10:7: flow[0].tls.cert: file not found: 'nope/client.pem'" in err
    assert main(["run", str(path)]) == 2  # run refuses it before sending, as validate does


def test_a_ca_that_is_not_a_pem_bundle(pki, capsys):
    path = scenario(pki, "defaults:\n  tls:\n    verify: true\n    ca: certs/client.key\nflow:\n  - path: /\n")
    err = validate(path, capsys)
    assert f"{path}:7:5: defaults.tls.ca: 'certs/client.key': not a PEM bundle of CA certificates" in err
    assert not any(line in err for line in key_material(pki / "certs" / "client.key"))


def test_a_key_without_a_certificate(pki, capsys):
    path = scenario(pki, "flow:\n  - path: /\n    tls:\n      key: certs/client.key\n")
    err = validate(path, capsys)
    assert f"{path}:7:7: flow[0].tls.key: a private key needs its certificate" in err


def test_a_certificate_whose_file_holds_no_key(pki, capsys):
    path = scenario(pki, "defaults:\n  tls:\n    cert: certs/client.pem\nflow:\n  - path: /\n")
    err = validate(path, capsys)
    assert f"{path}:6:5: defaults.tls.cert: the file holds no private key" in err


def test_a_key_that_does_not_match_its_certificate(pki, capsys):
    path = scenario(pki, "defaults:\n  tls:\n    cert: certs/client.pem\n    key: certs/stranger.key\n"
                         "flow:\n  - path: /\n")
    err = validate(path, capsys)
    assert f"{path}:7:5: defaults.tls.key: the private key does not belong to the certificate" in err
    assert not any(line in err for line in key_material(pki / "certs" / "stranger.key"))


def test_a_request_key_is_checked_against_the_defaults_certificate(pki, capsys):
    """Merged field by field: the request's key meets the defaults' certificate."""
    path = scenario(pki, "defaults:\n  tls:\n    cert: certs/client.pem\n    key: certs/client.key\n"
                         "flow:\n  - path: /good\n  - path: /bad\n    tls:\n      key: certs/stranger.key\n")
    err = validate(path, capsys)
    assert f"{path}:12:7: flow[1].tls.key: the private key does not belong to the certificate" in err
    assert "defaults.tls" not in err  # the defaults' own pair is fine


def test_cert_and_key_swapped(pki, capsys):
    path = scenario(pki, "flow:\n  - path: /\n    tls: {cert: certs/client.key, key: certs/client.pem}\n")
    err = validate(path, capsys)
    assert "flow[0].tls.cert: 'certs/client.key': holds a private key but no certificate" in err
    assert "flow[0].tls.key: 'certs/client.pem': holds a certificate but no private key" in err
    assert not any(line in err for line in key_material(pki / "certs" / "client.key"))


@pytest.mark.parametrize("key", ["encrypted.key", "encrypted-traditional.key"])
def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(pki, key):
    """In a new session without a terminal and with a timeout: a passphrase prompt would hang or fail here."""
    path = scenario(pki, f"defaults:\n  tls:\n    cert: certs/client.pem\n    key: certs/{key}\n"
                         "flow:\n  - path: /\n", name=f"{key}.yaml")
    done = subprocess.run([sys.executable, "-m", "runner", "validate", str(path)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True, timeout=60, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert f"{path}:7:5: defaults.tls.key: 'certs/{key}': encrypted private keys are not supported" in done.stderr
    assert "Traceback" not in done.stderr and "pass phrase" not in done.stderr.lower()


def test_an_encrypted_key_inside_the_certificate_file(pki, capsys, tmp_path):
    combined = tmp_path / "combined.pem"
    combined.write_bytes((pki / "certs" / "client.pem").read_bytes() + (pki / "certs" / "encrypted.key").read_bytes())
    path = scenario(tmp_path, f"defaults:\n  tls:\n    cert: {combined}\nflow:\n  - path: /\n")
    err = validate(path, capsys)
    assert f"{path}:6:5: defaults.tls.cert: encrypted private keys are not supported" in err


def test_a_directory_and_a_fifo_are_not_files_and_do_not_hang(pki, capsys, tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    path = scenario(tmp_path, f"defaults:\n  tls:\n    ca: {pki}\n    cert: {pki / 'certs' / 'client.pem'}\n"
                              f"    key: {fifo}\nflow:\n  - path: /\n")
    err = validate(path, capsys)
    assert f"{path}:6:5: defaults.tls.ca:" in err and "is not a regular file" in err
    assert f"{path}:8:5: defaults.tls.key:" in err


def test_every_tls_problem_of_a_file_is_reported_at_once(pki, capsys):
    path = scenario(pki, "defaults:\n  tls:\n    ca: certs/missing.pem\n    min_version: 1.1\n"
                         "flow:\n  - path: /\n    tls: {key: certs/client.key, server_name: 'https://x/'}\n"
                         "    keepalive: maybe\n")
    err = validate(path, capsys)
    for expected in ("defaults.tls.ca: file not found", "defaults.tls.min_version: must be 1.2 or 1.3",
                     "flow[0].tls.key: a private key needs its certificate", "flow[0].tls.server_name: must be a host",
                     f"{path}:11:", "flow[0].keepalive"):
        assert expected in err, expected


@pytest.mark.parametrize("block, fragment", [
    ("{verfiy: false}", "unknown field 'verfiy' (did you mean 'verify'?)"),
    ("{min_version: 1.1}", "must be 1.2 or 1.3 (got '1.1'): TLS 1.0 and 1.1 are obsolete"),
    ("{min_version: TLSv1.3}", "must be 1.2 or 1.3 (got 'TLSv1.3')"),
    ("{server_name: 'api.example.com:443'}", "host name without a port"),
    ("{server_name: ''}", "must be a host name"),
    ("{server_name: '*.example.com'}", "no wildcards"),
    ("{ca: ''}", "empty path"),
    ("{verify: sometimes}", "flow[0].tls.verify: Input should be a valid boolean"),
    ("true", "expected a mapping"),
])
def test_schema_mistakes_in_a_tls_block(tmp_path, capsys, block, fragment):
    path = scenario(tmp_path, f"flow:\n  - path: /\n    tls: {block}\n")
    err = validate(path, capsys)
    assert f"{path}:6:" in err and "flow[0].tls" in err and fragment in err


def test_a_think_step_takes_no_tls(tmp_path, capsys):
    path = scenario(tmp_path, "flow:\n  - path: /\n  - think: 1s\n    tls: {verify: false}\n")
    assert "a think step only pauses; remove tls" in validate(path, capsys)


def test_a_set_override_is_checked_and_named(pki, capsys):
    path = scenario(pki, "flow:\n  - path: /\n")
    err = validate(path, capsys, "--set", "defaults.tls.ca=certs/elsewhere.pem")
    assert "--set defaults.tls.ca=certs/elsewhere.pem: defaults.tls.ca: file not found" in err
    assert main(["validate", str(path), "--set", "defaults.tls.ca=certs/ca.pem"]) == 0


# -- the dry run and the JSON Schema ------------------------------------------------------------


def test_the_dry_run_shows_tls_and_keepalive_where_set(pki, capsys):
    path = scenario(pki, "defaults:\n  tls: {ca: certs/ca.pem, min_version: 1.3}\n"
                         "flow:\n  - name: home\n    path: /\n"
                         "  - name: login\n    path: /login\n    keepalive: false\n"
                         "    tls: {cert: certs/client.pem, key: certs/client.key, server_name: api.example.com}\n")
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tls:      verify with ca certs/ca.pem, TLS >= 1.3: home\n" in out
    assert ("verify with ca certs/ca.pem, client cert certs/client.pem + key certs/client.key, "
            "server name api.example.com, TLS >= 1.3: login") in out
    assert "keepalive: off (a new connection for each send): login" in out
    plain = scenario(pki, "flow:\n  - path: /\n", name="plain.yaml")
    assert main(["plan", str(plain)]) == 0
    out = capsys.readouterr().out
    assert "tls:" not in out and "keepalive:" not in out


def test_the_dry_run_says_when_tls_settings_meet_a_plain_http_target(tmp_path, capsys):
    path = scenario(tmp_path, "defaults:\n  tls: {verify: false}\nflow:\n  - path: /\n",
                    target="http://127.0.0.1:8080")
    assert main(["plan", str(path)]) == 0
    assert ("tls:      no certificate verification (verify: false): every request (unused: the target is plain "
            "http)") in capsys.readouterr().out


def test_the_json_schema_describes_every_tls_field_and_accepts_numeric_versions():
    schema = json.loads(render_schemas()["scenario.schema.json"])
    tls = schema["$defs"]["TlsSettings"]
    assert set(tls["properties"]) == {"verify", "ca", "cert", "key", "server_name", "min_version"}
    assert all(field.get("description") for field in tls["properties"].values())
    assert tls["additionalProperties"] is False
    for model, field in (("Defaults", "tls"), ("Defaults", "keepalive"), ("Step", "tls"), ("Step", "keepalive"),
                         ("BuiltinTarget", "tls")):
        assert schema["$defs"][model]["properties"][field].get("description"), (model, field)
    document = {"version": 1, "name": "n", "target": "https://127.0.0.1:8443",
                "defaults": {"tls": {"min_version": 1.2, "verify": False}, "keepalive": False},
                "flow": [{"path": "/", "tls": {"min_version": "1.3"}, "keepalive": True}],
                "stages": [{"requests": 1, "concurrency": 1}]}
    jsonschema.validate(document, schema)
    document["defaults"]["tls"]["min_version"] = 1.1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)


def test_the_dry_run_says_the_builtin_target_serves_https(tmp_path, capsys):
    path = scenario(tmp_path, "builtin: {tls: true}\nflow:\n  - path: /\n", target="builtin")
    assert main(["plan", str(path)]) == 0
    assert "builtin (runner's own server, over https with a throwaway certificate only the run trusts," \
           in capsys.readouterr().out
    path = scenario(tmp_path, "flow:\n  - path: /\n", target="builtin", name="plain.yaml")
    assert main(["plan", str(path)]) == 0
    assert "https" not in capsys.readouterr().out
