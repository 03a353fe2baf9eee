"""Run the built-in target in a child process and talk to it.

The target lives in its own process so that the load generator and the
server never compete for one interpreter: measurements then reflect the
runner, not a shared event loop. ``BuiltinTarget`` hides the process
plumbing -- start, learn the port, wait until it answers, stop cleanly.

With ``TargetConfig.tls`` the parent makes a throwaway CA and server
certificate (:mod:`runner.target.certificate`) before starting the child,
hands the child the certificate and key files, and keeps the CA file for the
clients that should trust the server (``BuiltinTarget.ca_file``). The files
live exactly as long as the target.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import ssl
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import IO

from runner.target.config import TargetConfig

__all__ = ["BuiltinTarget"]

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_STOP_GRACE_S = 5.0
_CONTROL_TIMEOUT_S = 5.0


class BuiltinTarget:
    """A ``python -m runner.target`` child process, usable as a context manager.

    >>> with BuiltinTarget(TargetConfig(body_size=512)) as target:
    ...     target.url  # doctest: +SKIP
    'http://127.0.0.1:41234'
    """

    def __init__(
        self,
        config: TargetConfig = TargetConfig(),
        host: str = "127.0.0.1",
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.host = host
        self.port: int | None = None
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._reaper: weakref.finalize | None = None
        self._certificate = None  # a ThrowawayCertificate while an https target runs
        self._client_tls: ssl.SSLContext | None = None  # how this object's own requests trust the target

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> "BuiltinTarget":
        """Start the child and return once it answers (https with ``config.tls``); raise RuntimeError if not."""
        if self._process is not None:
            raise RuntimeError("BuiltinTarget already started")
        deadline = time.monotonic() + self.startup_timeout_s
        if self.config.tls:
            self._make_certificate()
        try:
            # stderr goes to a file, not a pipe: nobody reads it while the server
            # runs, and a full pipe would block the child.
            self._stderr = tempfile.TemporaryFile()
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=self._child_environment(),
            )
        except BaseException:
            self._remove_certificate()
            self._close_stderr()
            raise
        # If the owner forgets stop(), do not leave a server running (nor its key on disk).
        self._reaper = weakref.finalize(self, _kill_quietly, self._process, self._certificate)
        try:
            self.host, self.port = self._read_announcement(deadline)
            self._wait_until_answering(deadline)
        except BaseException:
            self.stop()
            self._close_stderr()
            raise
        return self

    def stop(self) -> int | None:
        """SIGTERM the child, wait up to 5 s, then kill it; remove its certificate files; return its exit code."""
        process = self._process
        if process is None:
            self._remove_certificate()
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._reaper is not None:
            self._reaper.detach()
        self._remove_certificate()
        return process.returncode

    def __enter__(self) -> "BuiltinTarget":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- what callers use -----------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("BuiltinTarget not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_file(self) -> str | None:
        """The PEM file of the CA that signed an https target's certificate (None for http).

        Trust it, and only it, to verify the target: ``ssl.create_default_context(cafile=...)``,
        ``curl --cacert``. It is removed when the target stops.
        """
        return None if self._certificate is None else self._certificate.ca_file

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stats(self) -> int:
        """How many (non-control) requests the server has answered."""
        return int(self._control("/__runner/stats")["requests"])

    def reset(self) -> None:
        """Set the server's request count back to zero."""
        self._control("/__runner/reset")

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far (for error messages)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    # -- internals ------------------------------------------------------------

    def _command(self) -> list[str]:
        config = self.config
        command = [
            sys.executable, "-m", "runner.target",
            "--host", self.host,
            "--port", "0",
            "--body-size", str(config.body_size),
            "--delay-min", repr(config.delay_min_s),
            "--delay-max", repr(config.delay_max_s),
            "--seed", str(config.seed),
        ]
        for kind, probability in config.faults:
            command += ["--fault", f"{kind}={probability!r}"]
        if self._certificate is not None:
            command += ["--tls-cert", self._certificate.cert_file, "--tls-key", self._certificate.key_file]
        return command

    def _make_certificate(self) -> None:
        from runner.target.certificate import ThrowawayCertificate

        self._certificate = ThrowawayCertificate()
        # The probe and the control requests verify the server like any client of the run would.
        self._client_tls = ssl.create_default_context(cafile=self._certificate.ca_file)

    def _remove_certificate(self) -> None:
        certificate, self._certificate = self._certificate, None
        self._client_tls = None
        if certificate is not None:
            certificate.remove()

    @staticmethod
    def _child_environment() -> dict[str, str]:
        """Make ``runner`` importable in the child even when not pip-installed."""
        env = dict(os.environ)
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(_PROJECT_ROOT) + (os.pathsep + existing if existing else "")
        return env

    def _read_announcement(self, deadline: float) -> tuple[str, int]:
        stdout = self._process.stdout
        received = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in received:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail(f"did not announce its port within {self.startup_timeout_s} s")
                if not selector.select(remaining):
                    continue
                data = os.read(stdout.fileno(), 4096)
                if not data:
                    self._process.wait(timeout=_STOP_GRACE_S)
                    self._fail(f"exited with code {self._process.returncode} before announcing its port")
                received += data
        line = received.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        words = line.split()
        if len(words) != 3 or words[0] != "LISTENING" or not words[2].isdigit():
            self._fail(f"announced something unexpected: {line!r}")
        return words[1], int(words[2])

    def _wait_until_answering(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"exited with code {self._process.returncode} while starting")
            try:
                self.stats()
                return
            except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
                last_error = error
                time.sleep(0.02)
        self._fail(f"did not answer /__runner/stats within {self.startup_timeout_s} s ({last_error})")

    def _control(self, path: str) -> dict:
        if self.port is None:
            raise RuntimeError("BuiltinTarget not started")
        if self._client_tls is not None:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=_CONTROL_TIMEOUT_S,
                                                     context=self._client_tls)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=_CONTROL_TIMEOUT_S)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"built-in target answered {response.status} to {path}: {body!r}")
        return json.loads(body)

    def _fail(self, what: str) -> None:
        stderr = self.stderr_text().strip()
        raise RuntimeError(f"built-in target {what}; stderr: {stderr or '(empty)'}")


def _kill_quietly(process: subprocess.Popen, certificate=None) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    if certificate is not None:
        certificate.remove()
