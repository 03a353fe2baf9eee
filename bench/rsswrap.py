"""Run one command and report its peak RSS, in a process that runs nothing else.

``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the largest peak RSS among all
the children a process has waited for, over its whole life. Read in the
harness it would only ever grow (the first big client would mask every
smaller one after it), so each measurement gets a fresh wrapper process:

    python bench/rsswrap.py -- taskset -c 1 wrk ...

prints one JSON object: returncode, stdout, stderr, wall_s, max_rss_kb and
cpu_s (the command's user + system time).
``taskset`` execs the real client in the same process, so the figure is the
client's own. A client that forks helpers reports the largest single one,
not their sum. The harness side is :func:`measure`, which also bounds the
run in time and kills the wrapper's whole process group on timeout or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WRAPPER = Path(__file__).resolve()


@dataclass
class Measured:
    """What a wrapped command did: exit code, output, wall time and peak RSS in MiB."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float
    cpu_s: float  # user + system CPU time of the command


class Timeout(Exception):
    """The command ran past its time bound and was killed."""


def measure(command: list[str], timeout_s: float, cwd: str | None = None) -> Measured:
    """Run ``command`` under a fresh wrapper; kill its process group if it outlives ``timeout_s``."""
    wrapper = subprocess.Popen(
        [sys.executable, str(WRAPPER), "--", *command], cwd=cwd,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        out, err = wrapper.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(wrapper)
        raise Timeout(f"killed after {timeout_s:.0f} s: {' '.join(command)}") from None
    except BaseException:  # Ctrl-C: the client is in its own session and would not see it
        _kill_group(wrapper)
        raise
    if wrapper.returncode != 0:
        raise RuntimeError(f"rsswrap failed ({wrapper.returncode}): {err.strip()[-500:]}")
    report = json.loads(out)
    return Measured(report["returncode"], report["stdout"], report["stderr"], report["wall_s"],
                    round(report["max_rss_kb"] / 1024.0, 1), report["cpu_s"])


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def main(argv: list[str]) -> int:
    import resource

    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: rsswrap.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except OSError as exc:
        returncode, stdout, stderr = 127, "", f"{argv[0]}: {exc}"
    wall_s = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    json.dump({"returncode": returncode, "stdout": stdout, "stderr": stderr, "wall_s": round(wall_s, 3),
               "max_rss_kb": usage.ru_maxrss,  # KiB on Linux
               "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
