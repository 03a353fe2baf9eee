"""Every file in tests/bad_scenarios/ is a user mistake that must exit 2 with a located message.

Each file's first line says what is expected: ``# expect: LINE: message fragment``.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import ScenarioError
from runner.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, _compose, load_scenario
from runner.schemas.scenario import BUILTIN_MAX_BODY_SIZE

CORPUS = sorted((Path(__file__).parent / "bad_scenarios").glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (\d+): (.+)$")


def expectation(path: Path) -> tuple[int, str]:
    match = _EXPECT.match(path.read_bytes().decode("utf-8", "replace").splitlines()[0])
    assert match, f"{path.name} lacks its '# expect: LINE: fragment' first line"
    return int(match.group(1)), match.group(2)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_scenario_exits_2_with_file_line_and_field(path, command, capsys):
    line, fragment = expectation(path)
    code = main([command, str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{path}:{line}:" in err
    assert fragment in err
    assert "Traceback" not in err


def test_all_errors_of_a_file_are_reported_at_once(tmp_path, capsys):
    path = tmp_path / "many.yaml"
    path.write_text("version: 1\nname: many\ntarget: builtin\nflow:\n  - path: /{nope}\n"
                    "stages:\n  - requests: -1\n    concurrency: 0\n    colour: red\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for expected in (f"{path}:5:", "'{nope}'", f"{path}:7:", "requests: must be > 0", f"{path}:8:",
                     "concurrency: must be > 0", f"{path}:9:", "unknown field 'colour'"):
        assert expected in err


def test_a_real_subprocess_prints_no_traceback():
    path = CORPUS[0]
    done = subprocess.run([sys.executable, "-m", "runner", "run", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and str(path) in done.stderr


@pytest.mark.parametrize("argv, fragment", [
    (["run"], "the following arguments are required"),
    (["run", "scenarios/hello.yaml", "--out", "xml=out.xml"], "unknown reporter 'xml'"),
    (["run", "scenarios/hello.yaml", "--set", "stages.7.requests=5"], "no item 7"),
    (["run", "scenarios/hello.yaml", "--set", "stages.0.requests=many"], "--set stages.0.requests=many"),
    (["run", "scenarios/hello.yaml", "--target", "not a url"], "--target not a url"),
    (["run", "does/not/exist.yaml"], "does/not/exist.yaml: file not found"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_exit_2(argv, fragment, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_unwritable_output_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", "scenarios/hello.yaml", "--out", f"json={blocker}/sub/result.json"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot create directory" in err


def test_the_whole_corpus_validates_in_one_invocation_within_30_seconds(capsys):
    started = time.perf_counter()
    code = main(["validate", *map(str, CORPUS)])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert all(f"{path}:" in err for path in CORPUS)
    assert elapsed < 30, f"{elapsed:.1f} s"


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HEAD = "version: 1\nname: t\ntarget: builtin\nflow:\n  - path: /\n"


def test_a_merged_key_can_be_overridden_and_aliases_share_settings(tmp_path, capsys):
    path = write(tmp_path, HEAD + "stages:\n  - &base\n    requests: 10\n    concurrency: 2\n"
                                  "  - <<: *base\n    concurrency: 3\n  - <<: [{requests: 5}, *base]\n    name: last\n")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    stages = load_scenario(path).stages
    assert [(s.requests, s.concurrency, s.name) for s in stages] == [(10, 2, None), (10, 3, None), (5, 2, "last")]


def test_the_value_limit_counts_every_alias_in_full(tmp_path):
    """1 root list + 499 copies of a 100-value anchor + ``extra`` scalars: 50,000 values is the most."""
    def document(extra: int) -> str:
        anchor = "&a [" + ", ".join(["x"] * 99) + "]"
        return "[" + anchor + ", *a" * 498 + ", y" * extra + "]\n"

    assert 1 + 499 * 100 + 99 == MAX_VALUES
    assert isinstance(_compose(document(99), "at-limit").data, list)
    with pytest.raises(ScenarioError, match=f"more than {MAX_VALUES} values"):
        _compose(document(100), "past-limit")


def test_the_depth_limit_is_exact():
    assert _compose("[" * MAX_DEPTH + "]" * MAX_DEPTH, "at-limit").data is not None
    with pytest.raises(ScenarioError, match=f"more than {MAX_DEPTH} levels"):
        _compose("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "past-limit")


def test_a_file_over_the_size_limit_is_refused_without_parsing(tmp_path, capsys):
    path = write(tmp_path, HEAD + "description: '" + "x" * MAX_FILE_BYTES + "'\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}: the file is larger than 1024 KiB" in capsys.readouterr().err


def test_a_directory_is_not_a_scenario(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert f"{tmp_path}: cannot read file" in capsys.readouterr().err


def test_a_deeply_nested_set_value_is_an_error_not_a_crash(capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    code = main(["validate", "scenarios/hello.yaml", "--set", "stages.0.requests=" + "[" * 5000])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "stages[0].requests" in err


SECRET = "s3cr3t-t0ken-value"


@pytest.mark.parametrize("override, named", [
    (f"defaults.headers.Authorization=[Bearer, {SECRET}]", "--set defaults.headers.Authorization=***"),
    (f"flow.0.body={{token: {SECRET}}}", "--set flow.0.body=***"),
    (f"vars.api_token=[{SECRET}]", "--set vars.api_token=***"),
    (f"stages.0.requests=lots-and-lots-of-them-{SECRET}", "--set stages.0.requests=***"),
    ("stages.0.requests=${env:" + SECRET + "}", "--set stages.0.requests=***"),
    (f"target=http://user:{SECRET}@127.0.0.1:99999", "target"),
    (f"target=http://u:{SECRET[:8]}@h:99999", "--set target=http://***@h:99999"),
])
def test_set_errors_do_not_echo_values_that_may_be_secret(override, named, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    assert main(["validate", "scenarios/hello.yaml", "--set", override]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert SECRET not in err and SECRET[:8] not in err


def test_a_set_without_equals_is_not_echoed_when_it_looks_like_a_credential(capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    assert main(["validate", "scenarios/hello.yaml", "--set", f"Authorization: Bearer {SECRET}"]) == 2
    err = capsys.readouterr().err
    assert "expected dotted.key=value" in err and SECRET not in err


def test_a_header_value_from_the_file_is_not_quoted_but_its_name_is(tmp_path, capsys):
    path = write(tmp_path, HEAD.replace("  - path: /\n", f"  - path: /\n    headers:\n      X-Key: [{SECRET}]\n"
                                                        "      Bad Name: ok\n")
                 + "stages:\n  - requests: 1\n    concurrency: 1\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7:" in err and "flow[0].headers.X-Key: input should be a valid string" in err
    assert "invalid header name 'Bad Name'" in err and SECRET not in err


def test_long_values_are_quoted_as_short_excerpts(tmp_path, capsys):
    path = write(tmp_path, HEAD + "stages:\n  - requests: " + "many" * 10_000 + "\n    concurrency: 1\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "stages[0].requests" in err and len(err) < 500


def test_the_schema_cap_on_builtin_body_size_is_the_targets_own():
    from runner.target.responses import MAX_BODY_SIZE

    assert BUILTIN_MAX_BODY_SIZE == MAX_BODY_SIZE


def test_validate_accepts_https_on_the_fast_engine(tmp_path, capsys):
    """engine: fast speaks https since issue 13: validate (which builds the plan as run does) accepts it."""
    path = write(tmp_path, "version: 1\nname: tls\ntarget: https://127.0.0.1:8443\nengine: fast\n"
                           "flow:\n  - path: /\nstages:\n  - requests: 1\n    concurrency: 1\n")
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--set", "engine=auto"]) == 0
    assert main(["validate", str(path), "--set", "target=ftp://127.0.0.1:8080"]) == 2
    assert "ftp" in capsys.readouterr().err
