"""The exceptions runner raises on purpose, in one small tree.

User mistakes (a bad scenario, a bad flag) are :class:`UsageError` and end
the program with exit code 2 and a message, never a traceback. Failures of a
single request are not exceptions at this level: engines report them as an
error class string on the measurement (see :mod:`runner.engines.base`).
"""

from __future__ import annotations

from dataclasses import dataclass

from runner import DISTRIBUTION


def install_hint(extra: str) -> str:
    """How a message tells to install an optional extra: pip install, the distribution's name, the extra."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in a scenario, located as precisely as the source allows."""

    source: str  # a file name, or "--set" / "--target" for command-line overrides
    line: int | None  # 1-based
    column: int | None  # 1-based
    field: str  # dotted path such as "stages[1].concurrency", or "" for the whole file
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class RunnerError(Exception):
    """Base of every error runner raises deliberately."""

    exit_code = 70


class UsageError(RunnerError):
    """The user asked for something impossible: exit 2 with a clear message."""

    exit_code = 2


class ScenarioError(UsageError):
    """A scenario (file plus overrides) is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.source, p.line or 0, p.column or 0, p.field))
        super().__init__("\n".join(str(p) for p in self.problems))


class EnvironmentLimitError(RunnerError):
    """This machine cannot run the scenario as asked (e.g. the open-file limit)."""

    exit_code = 4
