"""Secrets from the environment are used on the wire and never appear in any output."""

import os
import subprocess
import sys

from aiohttp import web

from .conftest import ThreadedServer, write_scenario

SECRET = "s3cr3t-token-0123456789"


def test_secret_is_sent_but_never_written(tmp_path):
    seen = []

    async def handle(request):
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    with ThreadedServer(app) as server:
        scenario = write_scenario(tmp_path, f"""\
version: 1
name: secret
target: {server.url}
defaults:
  headers:
    Authorization: "Bearer ${{env:RUNNER_SECRET}}"
flow:
  - path: "/api?key=${{env:RUNNER_SECRET}}"
  - path: /plain
    headers: {{Cookie: "session=literal-cookie-value"}}
stages: [{{requests: 20, concurrency: 2}}]
""")
        outputs = {name: tmp_path / f"out.{name}" for name in ("json", "csv", "junit", "html")}
        args = [sys.executable, "-m", "runner", "run", str(scenario)]
        for name, path in outputs.items():
            args += ["--out", f"{name}={path}"]
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "RUNNER_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    assert seen and all(value == f"Bearer {SECRET}" for value in seen)
    texts = [done.stdout, done.stderr] + [path.read_text() for path in outputs.values()]
    for text in texts:
        assert SECRET not in text
        assert "literal-cookie-value" not in text


def test_missing_secret_is_a_located_error_without_a_value(tmp_path):
    scenario = write_scenario(tmp_path, """\
version: 1
name: secret
target: builtin
defaults:
  headers: {Authorization: "Bearer ${env:RUNNER_SURELY_UNSET_VARIABLE}"}
flow: [{path: /}]
stages: [{requests: 1, concurrency: 1}]
""")
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_SURELY_UNSET_VARIABLE"}
    done = subprocess.run([sys.executable, "-m", "runner", "validate", str(scenario)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert f"{scenario}:5:" in done.stderr
    assert "environment variable RUNNER_SURELY_UNSET_VARIABLE is not set" in done.stderr
