"""What every reporter says about timing phases (connect, tls, ttfb, receive).

Two judgement calls are shared, so that the console, CSV, JUnit and HTML
reports never disagree:

* a phase with no value (``count`` 0: ``tls`` on plain http, or an engine
  that measured none) is shown as absent, never as 0 ms, because a zero
  would read as an instantaneous handshake;
* connect and tls are counted per connection opened, not per request, so
  wherever their numbers appear the count of connections is shown with
  them: on a keep-alive run a p99 of connect over 8 connections is not
  comparable with a p99 of ttfb over 100,000 responses.

Results saved before phases were measured have no ``phases_ms``; every
helper treats that as "nothing to show" rather than as empty phases.
"""

from __future__ import annotations

from typing import Any

#: What each phase measures, in a few words (HTML and JUnit explain it next to the numbers).
PHASE_MEANING = {
    "connect": "TCP connect, per connection opened",
    "tls": "TLS handshake, per https connection opened",
    "ttfb": "request written -> first response byte",
    "receive": "first response byte -> last",
}
#: The same phases under the names k6 gives them.
K6_NAMES = {"connect": "http_req_connecting", "tls": "http_req_tls_handshaking",
            "ttfb": "http_req_waiting", "receive": "http_req_receiving"}


def phases_of(block: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """The ``phases_ms`` of a summary block, or None when the result predates phases."""
    phases = (block or {}).get("phases_ms")
    return phases if isinstance(phases, dict) else None


def measured(phase: dict[str, Any] | None) -> bool:
    """True when the phase has at least one value."""
    return bool(phase) and bool(phase.get("count"))


def phase_scopes(result: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, dict[str, Any]]]]:
    """(label, block, phases) per stage (``stage NAME``) and for the run (``total``), where phases exist."""
    scopes = [(f"stage {stage.get('name', '')}", stage) for stage in result.get("stages") or []]
    scopes.append(("total", result.get("totals") or {}))
    return [(label, block, phases) for label, block in scopes if (phases := phases_of(block)) is not None]


def connections_opened(phases: dict[str, dict[str, Any]]) -> int:
    """Connections the scope opened: one connect value each."""
    return int((phases.get("connect") or {}).get("count", 0))

