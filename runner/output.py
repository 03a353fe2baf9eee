"""Where reporter output goes: parsed ``--out`` pairs, checked before the run, written atomically.

Output paths are checked before the first request is sent, so a typo in a
path cannot throw away a finished hour-long run. Files are written to a
temporary name in the same directory and renamed into place, so a reader (or
an interrupted run) never sees half a report. Once a plan is compiled, what
the run prints on stderr (progress, errors, tracebacks) is scrubbed of its
secrets too (:func:`scrub_stderr`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import secrets as _secrets
from .errors import UsageError

STDOUT = "-"


@dataclass(frozen=True, slots=True)
class Output:
    reporter: str
    path: str  # "-" for standard output

    def __str__(self) -> str:
        return f"{self.reporter}={self.path}"


def parse_out(item: str, known: set[str]) -> Output:
    """``json=results/run.json`` -> Output; a bare name means standard output."""
    name, sep, path = item.partition("=")
    name = name.strip()
    if name not in known:
        raise UsageError(f"--out {item}: unknown reporter '{name}'; available: {', '.join(sorted(known))}")
    if sep and not path.strip():
        raise UsageError(f"--out {item}: empty path; use --out {name}=PATH or --out {name} for stdout")
    return Output(name, path.strip() if sep else STDOUT)


def combine(scenario_outputs: list[Output], cli_outputs: list[Output]) -> list[Output]:
    """CLI outputs replace the scenario's outputs of the same reporter; order is kept."""
    overridden = {o.reporter for o in cli_outputs}
    combined = [o for o in scenario_outputs if o.reporter not in overridden] + cli_outputs
    unique: list[Output] = []
    for output in combined:
        if output not in unique:
            unique.append(output)
    return unique


def check_writable(output: Output) -> None:
    """Create the parent directory and make sure a file can be written there."""
    if output.path == STDOUT:
        return
    target = Path(output.path)
    if target.is_dir():
        raise UsageError(f"--out {output}: '{output.path}' is a directory; give a file path")
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {output}: cannot create directory '{parent}': {exc.strerror or exc}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {output}: directory '{parent}' is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"--out {output}: file '{target}' is not writable")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename (or to stdout for '-')."""
    if path == STDOUT:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class ScrubbedStream:
    """A text stream that masks secrets in each line before passing it on.

    Text is held until a line ends (``\\n``, or ``\\r`` as a progress line on a
    terminal ends) or the stream is flushed, so a secret that ``print`` or
    ``traceback`` writes in several pieces is still seen whole. Everything
    else (``isatty``, ``fileno``, ``encoding``...) is the wrapped stream's.
    """

    def __init__(self, stream: TextIO, secrets: tuple[str, ...]):
        self._stream = stream
        self._secrets = secrets
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        end = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
        if end:
            complete, self._pending = self._pending[:end], self._pending[end:]
            self._stream.write(_secrets.redact_text(complete, self._secrets))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(_secrets.redact_text(self._pending, self._secrets))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def scrub_stderr(secrets: tuple[str, ...]) -> None:
    """Mask ``secrets`` in everything written to ``sys.stderr`` from now on, for the rest of the command.

    Installed for good rather than as a context manager: the CLI prints the
    final error message or traceback after the run's own code has returned.
    """
    if secrets:
        sys.stderr = ScrubbedStream(sys.stderr, tuple(secrets))
