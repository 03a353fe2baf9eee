"""A cookie jar per virtual user: what the target set, sent back on later requests.

A load test talks to one target, so the jar keeps name -> value and honours
deletion (``Max-Age=0`` or an ``Expires`` in the past); domain and path
scoping are not modelled. Jars are never shared, so one user's session never
leaks into another's.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
import time


def parse_set_cookie(line: str) -> tuple[str, str, bool] | None:
    """``"sid=abc; Path=/; Max-Age=0"`` -> ("sid", "abc", expired?), or None if malformed."""
    first, _, attributes = line.partition(";")
    name, sep, value = first.partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    expired = False
    for attribute in attributes.split(";"):
        key, _, argument = attribute.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                expired = int(argument.strip()) <= 0
            except ValueError:
                pass
        elif key == "expires" and not expired:
            try:
                expired = parsedate_to_datetime(argument.strip()).timestamp() <= time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
    return name, value, expired


class CookieJar:
    """Cookies of one virtual user; ``header`` is the ready ``Cookie`` value or None."""

    __slots__ = ("_cookies", "header")

    def __init__(self) -> None:
        self._cookies: dict[str, str] = {}
        self.header: str | None = None

    def update(self, set_cookie: str) -> None:
        """Take the ``Set-Cookie`` lines of one response (joined with newlines)."""
        changed = False
        for line in set_cookie.split("\n"):
            parsed = parse_set_cookie(line)
            if parsed is None:
                continue
            name, value, expired = parsed
            if expired:
                changed = self._cookies.pop(name, None) is not None or changed
            elif self._cookies.get(name) != value:
                self._cookies[name] = value
                changed = True
        if changed:
            self.header = "; ".join(f"{k}={v}" for k, v in self._cookies.items()) or None

    def get(self, name: str) -> str | None:
        return self._cookies.get(name)

    def __len__(self) -> int:
        return len(self._cookies)
