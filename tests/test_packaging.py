"""runner installs as one import namespace and lives beside other packages.

The repository keeps ``reporters/`` and ``schemas/`` at its top, but they
install as ``runner.reporters`` and ``runner.schemas``: ``schemas`` is also a
PyPI project, and a generic top-level name would overwrite it or be shadowed
by it. These tests build the real wheel from a copy of the repository, install
it into a fresh virtual environment after PyPI's ``schemas``, and use it from
a directory outside the repository, so nothing resolves through the checkout
(except in the one test that runs an uninstalled copy of the checkout there
on purpose). README's reporter-plugin example is installed there too.
They need the package index (as ``.ci/run`` does); they send load only to
the built-in target on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

DISTRIBUTION = "runner-loadtest"
PACKAGE_DIRS = {"runner": REPO / "runner", "runner.reporters": REPO / "reporters", "runner.schemas": REPO / "schemas"}
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120
SCENARIO = """\
version: 1
name: packaged
target: builtin
flow: [{name: page, path: "/page/{seq}"}]
stages: [{name: short, requests: 2000, concurrency: 20}]
"""


def _clean_env() -> dict[str, str]:
    """The environment for installed commands: nothing points back into the checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list, cwd: Path, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def source(tmp_path_factory) -> Path:
    """A copy of the repository, as a fresh clone has it."""
    copy = tmp_path_factory.mktemp("packaging") / "source"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", "results", ".pytest_cache", "node_modules"))
    return copy


@pytest.fixture(scope="session")
def wheel(source) -> Path:
    """The wheel, built with pip (in an isolated build environment) from the copy of the repository."""
    dist = source.parent / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source], cwd=source.parent,
         timeout=INSTALL_TIMEOUT_S)
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="session")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment with PyPI's ``schemas`` installed first, then runner's wheel."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", root], cwd=root)
    python = root / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "schemas"], cwd=root, timeout=INSTALL_TIMEOUT_S)
    _run([python, "-m", "pip", "install", "-q", wheel], cwd=root, timeout=INSTALL_TIMEOUT_S)
    return root


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory outside the repository, holding a short built-in-target scenario."""
    (tmp_path / "packaged.yaml").write_text(SCENARIO)
    return tmp_path


def test_install_hints_name_this_distribution_and_its_extras():
    """Messages that tell how to install an extra name runner-loadtest (``runner`` on PyPI is another project)."""
    import tomllib

    import runner
    from runner.errors import install_hint

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert runner.DISTRIBUTION == project["name"] == DISTRIBUTION
    assert install_hint("metrics") == "pip install 'runner-loadtest[metrics]'"
    sources = {path.relative_to(REPO).as_posix(): path.read_text()
               for directory in PACKAGE_DIRS.values() for path in directory.rglob("*.py")}
    extras = {extra for text in sources.values() for extra in re.findall(r"install_hint\(['\"](\w+)['\"]\)", text)}
    assert extras and extras <= set(project["optional-dependencies"]), extras
    written_out = [path for path, text in sources.items() if re.search(r"pip install '[\w.-]+\[", text)]
    assert written_out == [], "a hint spelled out by hand instead of install_hint()"


def _in_venv(venv: Path, code: str, cwd: Path) -> str:
    return _run([venv / "bin" / "python", "-c", code], cwd=cwd).stdout


def test_wheel_holds_only_the_runner_namespace_and_its_schemas(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-"
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.startswith(dist_info)} == {"runner"}, tops
    # Every module of the three source directories is in the wheel, at its place in the namespace
    # (pyproject.toml lists the packages by name, so a new subpackage must be added there).
    expected = {
        f"{package.replace('.', '/')}/{path.relative_to(directory).as_posix()}"
        for package, directory in PACKAGE_DIRS.items()
        for path in directory.rglob("*.py")
        if package != "runner" or path.relative_to(directory).parts[0] not in ("reporters", "schemas")
    }
    assert expected <= set(names), sorted(expected - set(names))
    packaged = {name for name in names if name.startswith("runner/") and not name.endswith(".py")}
    assert packaged == {"runner/schemas/scenario.schema.json", "runner/schemas/result.schema.json"}
    assert not [name for name in names if name.startswith(("tests/", "bench/", "scenarios/", "schemas/", "reporters/"))]


def test_wheel_metadata_names_the_distribution_the_command_and_the_builtin_reporters(wheel):
    archive = zipfile.ZipFile(wheel)
    info = next(name.split("/")[0] for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    metadata = archive.read(f"{info}/METADATA").decode()
    assert re.search(r"^Name: runner-loadtest$", metadata, re.M)
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert re.search(r"^runner = runner\.cli:main$", entry_points, re.M)
    group = entry_points.split("[runner.reporters]", 1)[1].split("\n[", 1)[0]
    targets = dict(re.findall(r"^(\w+) = (\S+)$", group, re.M))
    assert targets == {name: f"runner.reporters.{name}:{cls}" for name, cls in {
        "console": "ConsoleReporter", "json": "JsonReporter", "csv": "CsvReporter",
        "junit": "JUnitReporter", "html": "HtmlReporter"}.items()}


def test_installed_runner_leaves_pypi_schemas_untouched(venv, outside):
    """Every file PyPI's ``schemas`` installed still has the hash its RECORD gives; no top-level ``reporters``.

    (PyPI's ``schemas`` 0.7 is Python 2 code, so it is located, not imported.)
    """
    report = json.loads(_in_venv(venv, """
import base64, hashlib, importlib.metadata, importlib.util, json
changed = []
for file in importlib.metadata.distribution("schemas").files:
    if file.hash is None:
        continue
    digest = hashlib.new(file.hash.mode, file.locate().read_bytes()).digest()
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != file.hash.value:
        changed.append(str(file))
import runner.schemas
runner_files = [str(f) for f in importlib.metadata.distribution("runner-loadtest").files]
print(json.dumps({"changed": changed, "schemas": importlib.util.find_spec("schemas").origin,
                  "ours": runner.schemas.__file__, "reporters": importlib.util.find_spec("reporters") is not None,
                  "runner_files": runner_files}))
""", outside))
    assert report["changed"] == []
    site = Path(report["schemas"]).parent.parent
    assert Path(report["schemas"]) == site / "schemas" / "__init__.py"
    assert Path(report["ours"]) == site / "runner" / "schemas" / "__init__.py"
    assert report["reporters"] is False
    strays = [path for path in report["runner_files"]
              if not path.startswith(("runner/", "runner_loadtest-")) and not path.endswith("bin/runner")]
    assert strays == []


def test_installed_runner_validates_and_runs_outside_the_repository(venv, outside):
    runner = venv / "bin" / "runner"
    assert "packaged.yaml: ok" in _run([runner, "validate", "packaged.yaml"], cwd=outside).stdout
    _run([runner, "run", "packaged.yaml", "--quiet", "--out", "json=result.json"], cwd=outside)
    result = json.loads((outside / "result.json").read_text())
    assert (result["totals"]["requests"], result["totals"]["ok"], result["totals"]["failed"]) == (2000, 2000, 0)
    assert result["target"].startswith("builtin (http://127.0.0.1:")
    version = _run([venv / "bin" / "python", "-m", "runner", "--version"], cwd=outside).stdout
    assert "0.1.0" in version


def test_every_installed_module_imports_and_the_schemas_are_package_data(venv, outside):
    """A leftover ``import schemas`` or ``from reporters ...`` fails here, where the checkout is not on the path."""
    listing = json.loads(_in_venv(venv, """
import importlib, importlib.resources, json, pkgutil, runner
names = [m.name for m in pkgutil.walk_packages(runner.__path__, "runner.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
schemas = importlib.resources.files("runner.schemas")
print(json.dumps({"modules": names, "ids": [json.loads(schemas.joinpath(f"{kind}.schema.json").read_text())["$id"]
                                             for kind in ("scenario", "result")]}))
""", outside))
    assert {"runner.cli", "runner.reporters.html", "runner.schemas.scenario", "runner.engines.fast.engine"} <= set(
        listing["modules"])
    assert listing["ids"] == [f"https://runner-loadtest.invalid/runner/schemas/{kind}.schema.json"
                              for kind in ("scenario", "result")]
    _run([venv / "bin" / "runner", "schema", "--dir", "written"], cwd=outside)
    for kind in ("scenario", "result"):
        assert (outside / "written" / f"{kind}.schema.json").read_bytes() == (
            REPO / "schemas" / f"{kind}.schema.json").read_bytes()


def test_a_checkout_imports_its_own_subpackages_beside_an_installed_runner(venv, source, outside):
    """``runner`` from a checkout takes reporters/ and schemas/ from that checkout, installed or not.

    The venv holds the wheel; the checkout copy is not installed there. Without
    runner/checkout.py, ``runner.schemas`` would not be found from the checkout.
    """
    files = json.loads(_in_venv(venv, """
import json, runner, runner.reporters.base, runner.schemas.scenario
print(json.dumps([runner.__file__, runner.reporters.base.__file__, runner.schemas.scenario.__file__]))
""", source))
    assert files == [str(source / "runner" / "__init__.py"), str(source / "reporters" / "base.py"),
                     str(source / "schemas" / "scenario.py")]
    validated = _run([venv / "bin" / "python", "-m", "runner", "validate", outside / "packaged.yaml"], cwd=source)
    assert validated.stdout.endswith("packaged.yaml: ok\n")


def _readme_plugin() -> dict[str, str]:
    """The files of README's "Writing a reporter plugin" example, by the name its text gives each block."""
    section = (REPO / "README.md").read_text().split("## Writing a reporter plugin", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"`([\w./-]+)`:\n\n```\w+\n(.*?)```", section, re.S))


def test_readme_reporter_plugin_installs_and_renders(venv, outside):
    files = _readme_plugin()
    assert set(files) == {"pyproject.toml", "runner_markdown.py"}
    project = outside / "runner-markdown"
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", project], cwd=outside, timeout=INSTALL_TIMEOUT_S)
    runner = venv / "bin" / "runner"
    _run([runner, "run", "packaged.yaml", "--quiet", "--out", "markdown=summary.md", "--out", "json=result.json"],
         cwd=outside)
    result = json.loads((outside / "result.json").read_text())
    (stage,) = result["stages"]
    summary = (outside / "summary.md").read_text()
    assert summary.startswith("### packaged: passed\n")
    assert f"| short | 2000 | 0 | {stage['rps']:.0f} | {stage['latency_ms']['p95']} |" in summary
    # A saved result re-renders through the plugin as well.
    _run([runner, "report", "result.json", "--out", "markdown=again.md"], cwd=outside)
    assert (outside / "again.md").read_text() == summary

