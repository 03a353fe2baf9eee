"""Find or install the peer tools (wrk, hey, nginx, openssl from Debian; Locust from PyPI).

The harness must run on a fresh machine, so it installs what is missing
instead of assuming it. A peer that cannot be installed is not fatal: its
rows are reported as unavailable with the reason, so one broken package
does not cost the whole comparison. Debian packages are installed one at a
time for the same reason (one unknown name would fail a combined
``apt-get install``). Versions are recorded with the results, since a
number without the version that produced it cannot be compared later.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

#: binary -> Debian package that ships it (openssl makes the https mode's throwaway certificate)
DEBIAN_PEERS = {"wrk": "wrk", "hey": "hey", "nginx": "nginx", "openssl": "openssl"}
#: What the table mode looks for when no mode says otherwise: its clients and nginx.
TABLE_PEERS = {"wrk", "hey", "nginx", "locust", "seed-style", "runner"}
APT_TIMEOUT_S = 600
PIP_TIMEOUT_S = 600


@dataclass
class Peer:
    """One tool: where it is, its version, or why it is unavailable."""

    name: str
    command: list[str] = field(default_factory=list)  # how to invoke it, empty when unavailable
    version: str = ""
    installed_now: bool = False
    unavailable: str = ""  # reason; empty when usable

    @property
    def ok(self) -> bool:
        return not self.unavailable

    def to_dict(self) -> dict:
        return asdict(self)


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env,
                          stdin=subprocess.DEVNULL)


def _which(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):  # nginx lives in sbin, not always on PATH
        candidate = os.path.join(folder, binary)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class _Apt:
    """apt-get with a single 'update' per harness run, done only if something is missing."""

    def __init__(self) -> None:
        self.updated = False
        self.update_error = ""

    def install(self, package: str) -> str:
        """Install ``package``; return '' on success or the reason it failed."""
        if not self.updated:
            self.updated = True
            try:
                done = _run(["apt-get", "update"], APT_TIMEOUT_S)
                if done.returncode != 0:
                    self.update_error = f"apt-get update failed: {_tail(done.stderr)}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.update_error = f"apt-get update failed: {exc}"
        try:
            done = _run(["apt-get", "install", "-y", "--no-install-recommends", package], APT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"apt-get install {package} failed: {exc}"
        if done.returncode != 0:
            reason = f"apt-get install {package} failed: {_tail(done.stderr or done.stdout)}"
            return f"{reason} ({self.update_error})" if self.update_error else reason
        return ""


def _debian_version(package: str) -> str:
    try:
        done = _run(["dpkg-query", "-W", "-f=${Version}", package], 10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _tool_version(command: list[str]) -> str:
    """First line of a tool's own version output (wrk and nginx print it to stderr, wrk exits 1)."""
    try:
        done = _run(command, 10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0].strip() if text else ""


def debian_peer(binary: str, apt: _Apt, install: bool) -> Peer:
    package = DEBIAN_PEERS[binary]
    peer = Peer(binary)
    path = _which(binary)
    if path is None and install:
        reason = apt.install(package)
        path = _which(binary)
        if path is None:
            peer.unavailable = reason or f"package {package} installed but no '{binary}' binary found"
            return peer
        peer.installed_now = True
    if path is None:
        peer.unavailable = f"'{binary}' not found and --no-install given"
        return peer
    peer.command = [path]
    own = {"wrk": [path, "-v"], "nginx": [path, "-v"], "openssl": [path, "version"]}.get(binary)
    parts = [_tool_version(own) if own else "", f"debian {_debian_version(package)}".strip()]
    peer.version = "; ".join(p for p in parts if p and p != "debian")
    return peer


def locust_peer(install: bool) -> Peer:
    """Locust runs as ``python -m locust`` in this interpreter, so pip and the run agree on where it is."""
    peer = Peer("locust")
    if importlib.util.find_spec("locust") is None:
        if not install:
            peer.unavailable = "locust not installed and --no-install given"
            return peer
        try:
            done = _run([sys.executable, "-m", "pip", "install", "-q", "locust"], PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            peer.unavailable = f"pip install locust failed: {exc}"
            return peer
        importlib.invalidate_caches()
        if done.returncode != 0 or importlib.util.find_spec("locust") is None:
            peer.unavailable = f"pip install locust failed: {_tail(done.stderr or done.stdout)}"
            return peer
        peer.installed_now = True
    peer.command = [sys.executable, "-m", "locust"]
    peer.version = _tool_version([*peer.command, "--version"])
    return peer


def python_peer(name: str, distribution: str) -> Peer:
    """Our own Python clients (runner, the seed-style script): just record the versions."""
    peer = Peer(name, command=[sys.executable])
    try:
        from importlib.metadata import version
        peer.version = f"{distribution} {version(distribution)}"
    except Exception as exc:  # noqa: BLE001 - a missing distribution is a reason, not a crash
        peer.unavailable = f"{distribution} is not installed: {exc}"
    return peer


def find_peers(install: bool = True, only: set[str] | None = None) -> dict[str, Peer]:
    """Every peer by name (or those in ``only``), installing what is missing when ``install``."""
    apt = _Apt()
    wanted = TABLE_PEERS if only is None else only
    peers = {binary: debian_peer(binary, apt, install) for binary in DEBIAN_PEERS if binary in wanted}
    if "locust" in wanted:
        peers["locust"] = locust_peer(install)
    if "seed-style" in wanted:
        peers["seed-style"] = python_peer("seed-style", "aiohttp")
    if "runner" in wanted:
        peers["runner"] = python_peer("runner", "runner-loadtest")
    return peers
