"""Every file in tests/bad_scenarios/ is a user mistake that must exit 2 with a located message.

Each file's first line says what is expected: ``# expect: LINE: message fragment``.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main

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
