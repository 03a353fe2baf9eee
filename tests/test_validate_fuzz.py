"""Property: whatever a scenario file holds, ``runner validate`` answers 0 or 2, promptly, with located messages.

A scenario can come from anyone (a pull request, a generator, a fat finger),
so the loader is fed the example scenarios with their text cut, spliced and
salted with YAML's sharp edges, the same scenarios with random values put in
random places, small generated scenarios, and random YAML. Whatever the
input: exit 0 or 2 (never 70), no traceback, every line on stderr starts with
the file name (a located message), and an answer well within a time bound.

The runs are derandomized (a fixed sequence of examples), so CI is stable;
running with ``--hypothesis-seed`` or without ``derandomize`` explores further.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = {path.stem: path.read_text(encoding="utf-8") for path in sorted((REPO / "scenarios").glob("*.yaml"))}
#: One validation, on a loaded 2-core CI machine; the limits make the worst case a fraction of this.
SECONDS_PER_FILE = 5.0
#: Where each example is written (a directory of its own: relative ${file:...} references resolve in it).
WORKDIR = Path(tempfile.mkdtemp(prefix="runner-fuzz-"))


@pytest.fixture(scope="module", autouse=True)
def _remove_workdir():
    yield
    shutil.rmtree(WORKDIR, ignore_errors=True)

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Pieces of text that have broken YAML loaders: anchors and aliases, tags, merge keys, control
#: characters, escapes, flow brackets, odd numbers and dates, secret references, URLs that do not parse.
SHARP_EDGES = [
    "&a ", "*a", "&a [*a, *a]", "<<: *a", "<<: 5", "<<: [*a, 1]", "!!python/object:os.system ", "!!binary ",
    "!!set ", "!!omap ", "!custom ", "{", "}", "[", "]", "[[[[[[[[", "]]]]", "\t", "\x00", "\x1b[31m", "\x7f",
    "\u2028", "\ufeff", "---\n", "...\n", "? ", ": ", "- ", "'", '"', '"\\ud800"', '"\\x00"', '"\\r\\n"', "|\n", ">-\n",
    "#", "%YAML 1.1\n", "${env:RUNNER_FUZZ_UNSET}", "${file:missing.txt}", "${file:" + "x" * 300 + "}", ".inf",
    "-.inf", ".nan", "9" * 40, "-1", "0", "0x1F", "1e999", "2001-13-45", "2001-12-14t21:59:43.10-05:00", "~",
    "http://127.0.0.1:99999", "http://[::1]:8080", "http://[::1", "http://u:p@h:1", "/{seq}", "/{nope}", "{{seq}}",
    "p95 < 10ms", "stage:nope rps > 1", "2000/s", "1KiB", "30s", "{from: 1, to: 5}", "X Bad Header", "é", "😀",
]
YAML_ALPHABET = st.sampled_from(list(" \n-:#&*!|>'\"{}[],?%@`\t\\0123456789abcxyz.~/$") + ["\x00", "é"])
PAYLOAD = st.one_of(st.sampled_from(SHARP_EDGES), st.text(YAML_ALPHABET, max_size=12))

#: Values that have broken validators, compilers or messages: huge or non-finite numbers, long or
#: control-laden text, wrong types, and plausible-looking values of real fields.
ODD_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.text(min_size=200, max_size=400),
    st.sampled_from([s for s in SHARP_EDGES if "\x00" not in s] + ["builtin", "auto", "fast", "aiohttp", "GET",
                                                                   "2xx", "-", "", " ", "\n"]),
)
ODD_VALUES = st.recursive(ODD_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["requests", "concurrency", "rate", "duration", "from", "to", "path", "headers", "checks", "status",
         "json", "$.a", "body", "name", "delay", "min", "max", "faults", "reset", "matches", "equals"]),
        inner, max_size=3)), max_leaves=6)


class TooSlow(BaseException):
    """Raised by a timer inside a validation that overran: a BaseException, so that main() cannot swallow it."""


def _overran(signum, frame):
    raise TooSlow(f"runner validate took more than {SECONDS_PER_FILE} s")


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block after ``seconds``: a loader that expands without bound fails the test, not CI."""
    previous = signal.signal(signal.SIGALRM, _overran)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def validate(path: Path) -> tuple[int, str, float]:
    """Run ``runner validate PATH`` in this process: exit code, stderr and seconds taken."""
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with time_limit(SECONDS_PER_FILE), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["validate", str(path)])
    return code, stderr.getvalue(), time.perf_counter() - started


def assert_clean_verdict(content: str | bytes) -> int:
    """Write ``content`` as a scenario file, validate it, check the answer's shape; return the exit code."""
    path = WORKDIR / "scenario.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    code, err, elapsed = validate(path)
    assert "Traceback" not in err, err
    assert code in (0, 2), f"exit {code}:\n{err}"
    assert elapsed < SECONDS_PER_FILE, f"validate took {elapsed:.1f} s"
    if code == 2:
        lines = err.splitlines()
        assert lines and all(line.startswith(str(path)) for line in lines), err
    else:
        assert err == "", err
    return code


def _apply_edit(text: str, edit: tuple[str, float, float, str]) -> str:
    kind, at, span, payload = edit
    start = int(at * len(text))
    end = min(len(text), start + int(span * 40))
    lines = text.splitlines(keepends=True)
    row = min(int(at * len(lines)), len(lines) - 1) if lines else 0
    if kind == "insert":
        return text[:start] + payload + text[start:]
    if kind == "delete":
        return text[:start] + text[end:]
    if kind == "replace":
        return text[:start] + payload + text[end:]
    if kind == "duplicate_line" and lines:
        return "".join(lines[: row + 1] + lines[row:])
    if kind == "swap_lines" and len(lines) > 1:
        other = int(span * (len(lines) - 1))
        lines[row], lines[other] = lines[other], lines[row]
        return "".join(lines)
    return text


EDITS = st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace", "duplicate_line", "swap_lines"]),
                           st.floats(0, 1), st.floats(0, 1), PAYLOAD), min_size=1, max_size=4)


@FUZZ
@given(name=st.sampled_from(sorted(EXAMPLES)), edits=EDITS)
@example(name="hello", edits=[("insert", 0.0, 0.0, "x: &a [" + ",".join(["*a"] * 3) + "]\n")])
def test_examples_with_their_text_mutated(name, edits):
    text = EXAMPLES[name]
    for edit in edits:
        text = _apply_edit(text, edit)
    assert_clean_verdict(text)


def _paths(data, prefix=()):
    """Every path into a nested structure of dicts and lists, the root included."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, prefix + (index,))


def _replaced(data, path, value, mode):
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if mode == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif mode == "add_key" and isinstance(parent, dict):
        parent[f"{path[-1]}_extra"] = value
    else:
        parent[path[-1]] = value
    return data


@FUZZ
@given(name=st.sampled_from(sorted(EXAMPLES)), choice=st.floats(0, 1), value=ODD_VALUES,
       mode=st.sampled_from(["replace", "delete", "add_key"]))
def test_examples_with_a_value_replaced(name, choice, value, mode):
    data = yaml.safe_load(EXAMPLES[name])
    paths = list(_paths(data))
    path = paths[min(int(choice * len(paths)), len(paths) - 1)]
    mutated = _replaced(data, path, value, mode)
    assert_clean_verdict(yaml.safe_dump(mutated, allow_unicode=True, sort_keys=False))


STAGES = st.one_of(
    st.fixed_dictionaries({"requests": st.integers(1, 10**6), "concurrency": st.integers(1, 1000)}),
    st.fixed_dictionaries({"duration": st.sampled_from(["1s", "500ms", "2m", 3]),
                           "rate": st.sampled_from(["100/s", "5/ms", 20, {"from": "1/s", "to": "50/s"}])}),
    st.fixed_dictionaries({"duration": st.sampled_from(["10s", "1m"]),
                           "concurrency": st.fixed_dictionaries({"from": st.integers(0, 5), "to": st.integers(1, 50)})}),
)
REQUESTS = st.fixed_dictionaries(
    {"path": st.sampled_from(["/", "/page/{seq}", "/w/{worker}/{seq}?q=1", "/a b/é"])},
    optional={"method": st.sampled_from(["GET", "post", "PUT"]), "name": st.text(min_size=1, max_size=10),
              "headers": st.dictionaries(st.sampled_from(["Accept", "X-Trace", "Content-Type"]),
                                         st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
                                         max_size=2),
              "body": st.text(max_size=30), "timeout": st.sampled_from(["1s", 2.5])})
SCENARIOS = st.fixed_dictionaries(
    {"version": st.just(1), "name": st.text(min_size=1, max_size=12),
     "target": st.sampled_from(["builtin", "http://127.0.0.1:8080", "https://[::1]:8443/base", "http://localhost"]),
     "flow": st.lists(REQUESTS, min_size=1, max_size=3), "stages": st.lists(STAGES, min_size=1, max_size=3)},
    optional={"engine": st.sampled_from(["auto", "fast", "aiohttp"]), "workers": st.sampled_from([1, 2, "auto"]),
              "interval": st.sampled_from(["1s", "250ms"])},
).filter(lambda scenario: not (scenario.get("engine") == "fast" and scenario["target"].startswith("https")))


@FUZZ
@given(scenario=SCENARIOS)
def test_generated_scenarios_are_valid(scenario):
    """The other half of the contract: the fuzzing above must not be passing because validate refuses everything."""
    assert assert_clean_verdict(yaml.safe_dump(scenario, allow_unicode=True, sort_keys=False)) == 0


@FUZZ
@given(scenario=SCENARIOS, choice=st.floats(0, 1), value=ODD_VALUES, edits=st.lists(
    st.tuples(st.sampled_from(["insert", "replace"]), st.floats(0, 1), st.floats(0, 1), PAYLOAD), max_size=2))
def test_generated_scenarios_mutated(scenario, choice, value, edits):
    paths = list(_paths(scenario))
    mutated = _replaced(scenario, paths[min(int(choice * len(paths)), len(paths) - 1)], value, "replace")
    text = yaml.safe_dump(mutated, allow_unicode=True, sort_keys=False)
    for edit in edits:
        text = _apply_edit(text, edit)
    assert_clean_verdict(text)


@FUZZ
@given(document=ODD_VALUES)
def test_random_yaml_documents(document):
    assert_clean_verdict(yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(text=st.text(YAML_ALPHABET, max_size=200) | st.binary(max_size=100))
def test_random_text_and_bytes(text):
    assert_clean_verdict(text)


SET_KEYS = st.one_of(st.sampled_from(["name", "target", "engine", "workers", "interval", "stages.0.requests",
                                      "stages.1.duration", "stages.0", "stages.7.requests", "flow.0.path",
                                      "flow.0.headers.Authorization", "flow.0.body", "defaults.timeout", "vars.x",
                                      "builtin.body_size", "thresholds", "outputs.json", "name.sub", "", ".", "a..b"]),
                     st.text(YAML_ALPHABET, max_size=15))


@FUZZ
@given(overrides=st.lists(st.tuples(SET_KEYS, PAYLOAD | ODD_SCALARS.map(str)), max_size=3))
def test_random_set_overrides(overrides):
    """``--set`` values are YAML too, read within the same limits; messages name the --set or the file."""
    path = WORKDIR / "hello.yaml"
    path.write_text(EXAMPLES["hello"])
    argv = ["validate", str(path)]
    for key, value in overrides:
        argv.append(f"--set={key}={value}")  # one argument: a value may start with '-'
    stdout, stderr = io.StringIO(), io.StringIO()
    with time_limit(SECONDS_PER_FILE), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    err = stderr.getvalue()
    assert code in (0, 2) and "Traceback" not in err, err
    assert all(line.startswith((str(path), "--set", "--target")) for line in err.splitlines()), err


@settings(FUZZ, max_examples=30)
@given(depth=st.integers(1, 200), width=st.integers(1, 12), levels=st.integers(1, 12))
def test_nesting_and_alias_expansion_are_bounded(depth, width, levels):
    """Deep brackets and alias fans of any size: a prompt answer, whichever side of the limits they fall."""
    lines = ["version: 1", "name: bounded", "target: builtin", "flow:", "  - path: /", "stages:",
             "  - {requests: 1, concurrency: 1}", "vars:", "  a0: &a0 " + "[" * depth + "x" + "]" * depth]
    for level in range(1, levels):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    assert_clean_verdict("\n".join(lines) + "\n")


def test_a_real_process_answers_the_worst_inputs_promptly():
    """The CLI as users run it (a fresh interpreter, default recursion limit) on the corpus' attacks."""
    corpus = REPO / "tests" / "bad_scenarios"
    attacks = [corpus / name for name in ("alias_bomb.yaml", "deep_nesting.yaml", "nul_character.yaml",
                                          "alias_too_deep.yaml", "recursive_alias.yaml")]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "runner", "validate", *map(str, attacks)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert all(f"{path}:" in done.stderr for path in attacks), done.stderr
    assert time.perf_counter() - started < 30


def test_a_real_process_accepts_a_valid_file_after_the_attacks(tmp_path):
    """validate goes on to the next file after a refused one, and a good file still passes: exit 2 overall."""
    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLES["hello"])
    bomb = REPO / "tests" / "bad_scenarios" / "alias_bomb.yaml"
    done = subprocess.run([sys.executable, "-m", "runner", "validate", str(bomb), str(good)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and f"{good}: ok" in done.stdout and "Traceback" not in done.stderr
