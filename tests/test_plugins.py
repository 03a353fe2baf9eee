"""Third-party reporters: discovered through the runner.reporters entry-point group, used like built-ins."""

import json
import textwrap

from runner.cli import main

from .conftest import write_scenario


def install_fake_plugin(root, monkeypatch):
    """A real (if tiny) installed distribution: a module plus dist-info with an entry point."""
    (root / "fake_reporter.py").write_text(textwrap.dedent('''
        import json
        UPDATES = []

        class LinesReporter:
            name = "lines"

            def interval(self, update):
                UPDATES.append(update)

            def render(self, result):
                return json.dumps({"requests": result["totals"]["requests"],
                                   "updates": len(UPDATES)}).encode()
    '''))
    info = root / "fake_reporter-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-reporter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[runner.reporters]\nlines = fake_reporter:LinesReporter\n")
    monkeypatch.syspath_prepend(str(root))


def test_entry_point_reporter_renders_and_hears_intervals(tmp_path, monkeypatch, builtin_target):
    plugin_dir = tmp_path / "site"
    plugin_dir.mkdir()
    install_fake_plugin(plugin_dir, monkeypatch)
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: plugin
target: {builtin_target.url}
interval: 200ms
flow: [{{path: "/?delay=0.01"}}]
stages: [{{duration: 1s, concurrency: 5}}]
outputs: {{lines: {tmp_path / "from-yaml.txt"}}}
""")
    assert main(["validate", str(scenario)]) == 0  # the plugin's name is known to the loader too
    out = tmp_path / "lines.json"
    assert main(["run", str(scenario), "--quiet", "--out", f"lines={out}"]) == 0
    data = json.loads(out.read_text())
    assert data["requests"] > 0
    assert data["updates"] >= 3  # about five 200 ms intervals in a 1 s stage
