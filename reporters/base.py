"""The reporter interface and the registry of reporters by name.

A reporter turns a finished result, as the documented JSON-shaped dict
(``schemas/result.schema.json``), into bytes. It never opens files, reads the
clock or touches the network: the CLI decides where the bytes go (a file
written atomically, or stdout). Because the input is the same dict the JSON
reporter writes, any reporter can re-render a saved result later
(``runner report``). Third-party reporters register in the
``runner.reporters`` entry-point group and are used like built-in ones:
``--out NAME=PATH``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, ClassVar, Protocol

ENTRY_POINT_GROUP = "runner.reporters"


class Reporter(Protocol):
    """Renders a result; ``name`` is what ``--out NAME=PATH`` and ``outputs:`` use."""

    name: ClassVar[str]

    def render(self, result: dict[str, Any]) -> bytes:
        ...


class IntervalListener(Protocol):
    """Optional: a reporter with ``interval`` also hears a snapshot once per interval during the run.

    The snapshot is ``{"stage", "completed", "failed", "elapsed_s"}``; a
    listener must return quickly (it runs on the load generator's event loop),
    and an exception it raises is ignored rather than stopping the run.
    """

    def interval(self, update: dict[str, Any]) -> None:
        ...


def _builtin() -> dict[str, type]:
    from .console import ConsoleReporter
    from .csv import CsvReporter
    from .html import HtmlReporter
    from .json import JsonReporter
    from .junit import JUnitReporter

    return {cls.name: cls for cls in (ConsoleReporter, JsonReporter, CsvReporter, JUnitReporter, HtmlReporter)}


def available_reporters() -> dict[str, type]:
    """Built-in reporters plus those installed under the entry-point group."""
    found = dict(_builtin())
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in found:
            try:
                found[entry.name] = entry.load()
            except Exception:  # a broken plugin must not break runs that do not use it
                continue
    return found
