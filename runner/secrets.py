"""Secrets in scenarios: ``${env:NAME}`` and ``${file:PATH}`` references, and redaction.

A scenario file stays free of credentials: it names where they come from,
and the compiler fills them in. Every value that came from such a reference,
and every value of a credential header (Authorization, Cookie,
Proxy-Authorization), is remembered so that reports and error messages can
be scrubbed before anything is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
MASK = "***"
#: Shorter values are not scrubbed from output: they would erase ordinary text.
_MIN_SECRET_LENGTH = 4


def missing_references(text: str, base_dir: Path | None = None) -> list[str]:
    """References in ``text`` that cannot be resolved, as readable phrases."""
    missing = []
    for kind, name in REFERENCE.findall(text):
        if kind == "env" and name not in os.environ:
            missing.append(f"environment variable {name} is not set")
        elif kind == "file" and not _file_path(name, base_dir).is_file():
            missing.append(f"secret file {name} does not exist")
    return missing


def resolve(text: str, found: set[str], base_dir: Path | None = None) -> str:
    """Replace every reference with its value; add the values to ``found``."""
    def substitute(match: re.Match) -> str:
        kind, name = match.groups()
        if kind == "env":
            value = os.environ[name]
        else:
            value = _file_path(name, base_dir).read_text(encoding="utf-8").strip()
        found.add(value)
        return value

    return REFERENCE.sub(substitute, text)


def _file_path(name: str, base_dir: Path | None) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def redact(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with every secret value replaced by ``***``."""
    for secret in sorted((s for s in secrets if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True):
        data = data.replace(secret.encode(), MASK.encode())
    return data
