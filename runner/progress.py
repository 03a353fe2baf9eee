"""The progress line on stderr while a run is going.

On a terminal it rewrites one line each second; in CI logs (not a terminal)
it prints a plain line every few seconds so logs stay short.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .executor import Progress


class ProgressLine:
    def __init__(self, stream: TextIO | None = None, log_every_s: float = 10.0):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.log_every_s = log_every_s
        self._last_logged = 0.0
        self._last_stage: int | None = None

    def __call__(self, progress: Progress) -> None:
        stage = progress.stage
        rate = progress.completed / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
        of = f"/{stage.requests:,}" if stage.requests else ""
        text = (f"stage {stage.name}: {progress.completed:,}{of} requests, {rate:,.0f} req/s, "
                f"{progress.failed:,} failed, {progress.elapsed_s:.0f}s")
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
            return
        if self._last_stage != stage.index:
            self._last_stage, self._last_logged = stage.index, 0.0
        if progress.elapsed_s - self._last_logged >= self.log_every_s:
            self._last_logged = progress.elapsed_s
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
