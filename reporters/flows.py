"""What every reporter says about flows, skipped steps and data tables.

The four human-facing reporters (console, JUnit, HTML; CSV for its row
labels) must agree on two judgement calls, so they are made once here:

* which flows are worth a table: a scenario with a plain ``flow:`` list runs
  one implicit flow named ``default`` whose numbers repeat the request
  table, so it is shown only when the scenario named its flows (a flow not
  called ``default``, or several flows);
* how a data table's usage reads: ``used`` counts rows handed out, which for
  ``unique`` tables is the number of distinct rows, but for ``sequential``
  and ``random`` tables may exceed the table's size, where "40 of 10 rows
  used" would read as a bug.

Results saved before flows existed lack ``by_flow``, ``data`` and
``skipped``; every helper treats a missing key as empty or zero.
"""

from __future__ import annotations

from typing import Any

#: The name the runner gives the one flow of a scenario written as a plain ``flow:`` list.
IMPLICIT_FLOW = "default"


def named_flows(flows: list[dict[str, Any]] | None) -> bool:
    """True when ``flows`` (a ``by_flow`` list) is more than the implicit single ``default`` flow."""
    flows = flows or []
    return len(flows) > 1 or any(flow.get("name") != IMPLICIT_FLOW for flow in flows)


def shown_flows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's ``by_flow`` blocks if they deserve their own table, else an empty list."""
    flows = result.get("by_flow") or []
    return list(flows) if named_flows(flows) else []


def stage_flows(stage: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The block of flow ``name`` within one stage, if that stage has it."""
    return next((flow for flow in stage.get("by_flow") or [] if flow.get("name") == name), None)


def failed_share(flow: dict[str, Any]) -> str:
    """Failed iterations as a percentage of iterations, or "–" when there were none."""
    iterations = flow.get("iterations", 0)
    return f"{flow.get('iterations_failed', 0) / iterations:.2%}" if iterations else "–"


def data_usage(table: dict[str, Any]) -> str:
    """One line about one data table, e.g. ``37 of 200 rows used (unique per vu)``.

    Without the table name, so each reporter can put the name where it fits
    (a label, a table cell, a property name).
    """
    rows, used = table.get("rows", 0), table.get("used", 0)
    how = f"{table.get('mode', '?')} per {table.get('per', '?')}"
    if used > rows:  # sequential/random tables hand rows out again: say so instead of "40 of 10"
        text = f"{used:,} rows handed out from {rows:,} ({how}, rows reused)"
    else:
        text = f"{used:,} of {rows:,} rows used ({how})"
    if table.get("exhausted"):
        text += ", EXHAUSTED: users that needed another row stopped"
    return text


def skipped_by_request(result: dict[str, Any]) -> list[tuple[str, int]]:
    """(request name, skipped) for each request with skipped steps, whole run."""
    return [(block.get("name", ""), block["skipped"]) for block in result.get("by_request") or []
            if block.get("skipped")]
