"""What machine the numbers came from, and how busy it was.

Throughput numbers mean nothing without the machine: core count, CPU model
and kernel set the ceiling. On a shared machine other people's tests and
benchmarks steal CPU, so the load average and the busiest processes are
recorded before and after the run, and the harness warns when the machine
was not idle.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

#: 1-minute load average above which the harness warns that numbers are skewed.
BUSY_LOAD = 0.5


def stop_process_group(process, first_signal: int) -> None:
    """Ask a server's process group to stop with ``first_signal``; SIGKILL it if it lingers past 5 s."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, first_signal)
        process.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=5)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> int:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True, timeout=5).stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return os.cpu_count() or 0


def machine_info() -> dict:
    return {
        "nproc": nproc(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def cpu_jiffies() -> list[tuple[int, int]]:
    """(process time, total) clock ticks per CPU since boot, from /proc/stat; [] where unreadable.

    Process time is user + nice + system: the time that shows up in some
    process's rusage. irq/softirq time (loopback TCP is mostly softirq) is
    left out, so that "busy minus our processes" means other processes.
    """
    ticks = []
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu":
                    numbers = [int(v) for v in values[:8]]
                    ticks.append((sum(numbers[:3]), sum(numbers)))
    except (OSError, ValueError):
        return []
    return ticks


def busy_seconds(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[float]:
    """CPU seconds each CPU spent running processes between two :func:`cpu_jiffies` readings."""
    hertz = os.sysconf("SC_CLK_TCK")
    return [round((a[0] - b[0]) / hertz, 3) for b, a in zip(before, after, strict=False)]


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the given processes used so far (processes already gone count 0)."""
    hertz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return round(total / hertz, 3)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx's workers), [] when unreadable."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def busiest_processes(limit: int = 6) -> list[str]:
    """`top -bn1` process lines with CPU use, busiest first: who else was on the machine."""
    try:
        text = subprocess.run(["top", "-bn1", "-o", "%CPU"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.strip().startswith("PID")), None)
    if header is None:
        return []
    busy = []
    for line in lines[header + 1:]:
        fields = line.split()
        if len(fields) >= 12 and _float(fields[8]) >= 1.0:
            busy.append(" ".join(fields[:1] + fields[8:9] + fields[11:]))  # pid, %CPU, command
    return busy[:limit]


def _float(text: str) -> float:
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return 0.0


def load_snapshot() -> dict:
    return {"loadavg_1_5_15": load_average(), "busy_processes": busiest_processes()}


def load_warning(snapshot: dict) -> str:
    load = snapshot.get("loadavg_1_5_15") or [0.0]
    if load[0] <= BUSY_LOAD:
        return ""
    others = "; ".join(snapshot.get("busy_processes", [])) or "none seen by top right now"
    return (f"machine not idle: 1-min load {load[0]} on {nproc()} CPUs (busy: {others}); "
            f"numbers are skewed, compare ratios rather than absolute req/s")
