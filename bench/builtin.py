"""runner's built-in target as a server for the harness: ``runner serve`` in a child process.

Two modes load it: ``servers`` (the built-in target against nginx under wrk,
each pinned to CPU 0) and ``million`` (wrk's time for 1M requests against
the target that ``runner run scenarios/million.yaml`` starts for itself).
It is started the way a user would, ``python -m runner serve --port P
--body-size N`` from the repository, on a free loopback port, optionally
under ``taskset``; it is ready once ``/__runner/stats`` answers.

The object offers what :mod:`checks` reads from nginx: ``served()`` (the
target's own count of answered requests; its control requests are not
counted, so ``status_counts_itself`` is False), ``cpu_seconds()`` and a
``label`` for notes.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import process_cpu_seconds, stop_process_group
from nginx import free_port

REPO_DIR = Path(__file__).resolve().parent.parent


class BuiltinServer:
    """Context manager: ``runner serve`` on a free port (pinned to ``cpu`` if given), stopped on exit."""

    label = "target"
    status_counts_itself = False

    def __init__(self, body_size: int, cpu: str | None = None) -> None:
        self.body_size = body_size
        self.cpu = cpu
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._stderr = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        command = [sys.executable, "-m", "runner", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--body-size", str(self.body_size)]
        return ["taskset", "-c", self.cpu, *command] if self.cpu is not None else command

    def __enter__(self) -> "BuiltinServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        self.port = free_port()
        self._stderr = tempfile.TemporaryFile()
        # taskset execs python in place, so the pid is the server's own (for its CPU time).
        self.process = subprocess.Popen(self.command, cwd=REPO_DIR, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                last_error = f"exited with code {self.process.returncode}"
                break
            try:
                if self._stats() is not None:
                    return
            except (OSError, http.client.HTTPException, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.05)
        self._stderr.seek(0)
        log = self._stderr.read().decode("utf-8", "replace").strip()
        raise RuntimeError(f"built-in target did not start on port {self.port}: {last_error}\n{log}")

    def _stats(self) -> int | None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/__runner/stats")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        return int(json.loads(body)["requests"]) if response.status == 200 else None

    def served(self) -> int | None:
        """Requests the target answered so far (its control requests excluded); None if it does not say."""
        try:
            return self._stats()
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            return None

    def cpu_seconds(self) -> float | None:
        if self.process is None:
            return None
        return process_cpu_seconds([self.process.pid])

    def stop(self) -> None:
        """SIGTERM (the server exits cleanly on it), then SIGKILL to its process group if it lingers."""
        process, self.process = self.process, None
        stop_process_group(process, signal.SIGTERM)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
