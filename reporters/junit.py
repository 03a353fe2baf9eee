"""JUnit XML reporter: thresholds and checks as test cases CI systems display.

GitHub Actions (test-reporter actions), GitLab (``artifacts:reports:junit``)
and Jenkins (``junit`` step) all read the de-facto JUnit format, so a load
test that writes it shows up next to unit tests with no plugin. The mapping:

* each threshold is a test case (``classname="runner.thresholds"``), failed
  when the threshold failed, with the measured and expected values;
* each check is a test case (``classname="runner.checks"``), failed when any
  response did not pass it;
* with neither, one ``run completed`` case, so the suite is never empty and
  still fails when the run was interrupted or nothing succeeded;
* an interrupted run adds a ``run interrupted`` case with an ``<error>``
  (the numbers are partial, which is not the same as a failed threshold);
* each named flow is a test case (``classname="runner.flows"``), failed when
  any of its iterations had a failed request, so a broken user journey is
  visible even when no threshold covers it. The implicit ``default`` flow
  of a plain ``flow:`` list is left out: it would repeat ``run completed``.

Flow steps that were never sent (``skipped``: a capture earlier in the
iteration failed) are a suite property and a line in their flow's case, not
JUnit ``skipped`` test cases: they are requests, not tests. Data tables are
properties (``data.NAME``); an exhausted one is also noted in the suite's
``system-out``. The timing phases are properties too, for the run
(``phases.ttfb``) and each stage (``stage.NAME.phases.ttfb``): CI pages show
suite properties next to the cases, and a phase is a measurement, not a
test.

Built with ElementTree so every user string is escaped; characters XML 1.0
cannot carry at all (control characters) are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from runner.metrics.recorder import PHASES

from .flows import data_usage, failed_share, shown_flows
from .phases import measured, phases_of

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    return _INVALID_XML.sub("", str(value))


def _number(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"


def format_value(value: float | None, unit: str | None) -> str:
    """A threshold value the way users write it: ms, percent for ratios, /s for rates."""
    if value is None:
        return "no data"
    if unit == "ms":
        return f"{_number(float(value))} ms"
    if unit == "ratio":
        return f"{_number(float(value) * 100)}%"
    if unit == "per_s":
        return f"{float(value):,.1f}/s"
    return _number(value)


def scope_label(threshold: dict[str, Any]) -> str:
    """``total``, ``stage/<name>`` or ``request/<name>``."""
    scope = threshold.get("scope") or "total"
    target = threshold.get("target")
    return f"{scope}/{target}" if target else scope


def bare_expression(threshold: dict[str, Any]) -> str:
    """The expression without its ``stage:NAME`` / ``request:NAME`` prefix (the scope is shown apart)."""
    expression = threshold.get("expression") or f"{threshold.get('metric')} {threshold.get('op')} ?"
    prefix = f"{threshold.get('scope')}:{threshold.get('target')}"
    if threshold.get("target") and expression.startswith(prefix):
        return expression[len(prefix):].lstrip()
    return expression


def aggregated_checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Run-level checks; summed from the stages when an older result lacks them."""
    if result.get("checks") is not None:
        return list(result["checks"])
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for stage in result.get("stages") or []:
        for check in stage.get("checks") or []:
            key = (check.get("request", ""), check["name"])
            entry = merged.setdefault(key, {"name": check["name"], "request": key[0], "passes": 0, "fails": 0})
            entry["passes"] += check.get("passes", 0)
            entry["fails"] += check.get("fails", 0)
    return list(merged.values())


def _case(suite: ET.Element, classname: str, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=_text(name), time="0")


def _threshold_case(suite: ET.Element, threshold: dict[str, Any]) -> bool:
    case = _case(suite, "runner.thresholds", f"{scope_label(threshold)}: {bare_expression(threshold)}")
    unit = threshold.get("unit")
    measured = format_value(threshold.get("actual"), unit)
    expected = f"{threshold.get('op', '')} {format_value(threshold.get('expected'), unit)}"
    summary = f"measured {measured}, expected {expected}"
    details = [summary, f"metric: {threshold.get('metric')}", f"scope: {scope_label(threshold)}"]
    if threshold.get("window_s"):
        details.append(f"window: {_number(float(threshold['window_s']))}s")
    if threshold.get("reason"):
        details.append(f"reason: {threshold['reason']}")
    if threshold.get("source"):
        details.append(f"defined at: {threshold['source']}")
    if threshold.get("passed"):
        ET.SubElement(case, "system-out").text = _text("\n".join(details))
        return False
    reason = threshold.get("reason")
    message = summary + (f" ({reason})" if reason and threshold.get("actual") is not None else "")
    failure = ET.SubElement(case, "failure", message=_text(message), type="threshold")
    failure.text = _text("\n".join(details))
    return True


def _check_case(suite: ET.Element, check: dict[str, Any]) -> bool:
    passes, fails = check.get("passes", 0), check.get("fails", 0)
    total = passes + fails
    case = _case(suite, "runner.checks", f"{check.get('request') or '*'}: {check['name']}")
    rate = f"{fails / total:.2%}" if total else "n/a"
    summary = f"{fails:,} of {total:,} responses failed the check ({rate}); {passes:,} passed"
    if fails <= 0:
        ET.SubElement(case, "system-out").text = _text(summary)
        return False
    ET.SubElement(case, "failure", message=_text(summary), type="check").text = _text(summary)
    return True


def _completed_case(suite: ET.Element, result: dict[str, Any]) -> bool:
    totals = result.get("totals") or {}
    requests, ok = totals.get("requests", 0), totals.get("ok", 0)
    case = _case(suite, "runner.run", "run completed")
    if result.get("interrupted"):
        problem = f"interrupted by {result.get('interrupt_signal') or 'a signal'} after {requests:,} requests"
    elif requests == 0:
        problem = "no request completed"
    elif ok == 0:
        problem = f"every request failed ({requests:,} of {requests:,})"
    else:
        ET.SubElement(case, "system-out").text = f"{ok:,} of {requests:,} requests ok"
        return False
    ET.SubElement(case, "failure", message=_text(problem), type="run").text = _text(problem)
    return True


def _flow_case(suite: ET.Element, flow: dict[str, Any]) -> bool:
    iterations, failed = flow.get("iterations", 0), flow.get("iterations_failed", 0)
    duration = flow.get("iteration_duration_ms") or {}
    case = _case(suite, "runner.flows", str(flow.get("name", "")))
    summary = f"{failed:,} of {iterations:,} iterations failed ({failed_share(flow)})"
    skipped = flow.get("skipped", 0)
    if skipped:
        summary += f"; {skipped:,} steps skipped after a failed capture"
    details = [
        summary,
        f"iterations/s: {_number(float(flow.get('iterations_per_s', 0.0)))}",
        "iteration duration: " + ", ".join(f"{k} {_number(float(duration.get(k, 0.0)))} ms"
                                           for k in ("p50", "p95", "p99", "max")),
        f"requests: {flow.get('requests', 0):,} ({flow.get('ok', 0):,} ok, {flow.get('failed', 0):,} failed)",
        f"skipped steps: {skipped:,}",
    ]
    if flow.get("dropped"):
        details.append(f"dropped arrivals: {flow['dropped']:,}")
    if failed <= 0:
        ET.SubElement(case, "system-out").text = _text("\n".join(details))
        return False
    failure = ET.SubElement(case, "failure", message=_text(summary), type="flow")
    failure.text = _text("\n".join(details))
    return True


def phase_summary(phase: str, numbers: dict[str, Any]) -> str:
    """One phase in words: its percentiles and what it counted (connections opened, or responses)."""
    count = int(numbers.get("count", 0))
    noun = "connection" if phase in ("connect", "tls") else "response"
    counted = f"{count:,} {noun}{'' if count == 1 else 's'}" + (" opened" if noun == "connection" else "")
    if not measured(numbers):
        return f"no value ({counted})"
    stats = ", ".join(f"{key} {_number(float(numbers.get(key, 0.0)))} ms" for key in ("p50", "p95", "p99", "max"))
    return f"{stats} ({counted})"


def _phase_properties(result: dict[str, Any]) -> dict[str, str]:
    """``phases.PHASE`` for the run and ``stage.NAME.phases.PHASE`` per stage; none for older results."""
    props = {}
    scopes = [("", result.get("totals"))] + [(f"stage.{stage.get('name', '')}.", stage)
                                              for stage in result.get("stages") or []]
    for prefix, block in scopes:
        phases = phases_of(block)
        if phases is not None:
            for phase in PHASES:
                props[f"{prefix}phases.{phase}"] = phase_summary(phase, phases.get(phase) or {})
    return props


def _properties(suite: ET.Element, result: dict[str, Any]) -> None:
    engine = result.get("engine") or {}
    generator = result.get("generator") or {}
    scenario = result.get("scenario") or {}
    props = {
        "engine": engine.get("name", ""),
        "target": result.get("target", ""),
        "runner_version": result.get("runner_version", ""),
        "scenario_source": scenario.get("source", ""),
        "started_at": result.get("started_at", ""),
        "finished_at": result.get("finished_at", ""),
        "generator_verdict": generator.get("verdict", ""),
    }
    if "skipped" in (result.get("totals") or {}):  # absent from results older than flows
        props["skipped_steps"] = result["totals"]["skipped"]
    for table in result.get("data") or []:
        props[f"data.{table.get('name', '')}"] = data_usage(table)
    props.update(_phase_properties(result))
    if result.get("aborted"):
        props["aborted"] = f"{result['aborted'].get('reason')} (at {result['aborted'].get('at_s')}s)"
    element = ET.SubElement(suite, "properties")
    for key, value in props.items():
        ET.SubElement(element, "property", name=key, value=_text(value))


def _junit_timestamp(iso: str) -> str:
    """JUnit's schema wants ``YYYY-MM-DDTHH:MM:SS`` without a zone; results are UTC."""
    return iso[:19] if len(iso) >= 19 else iso


class JUnitReporter:
    """Renders thresholds and checks as a JUnit ``<testsuites>`` document."""

    name = "junit"

    def render(self, result: dict[str, Any]) -> bytes:
        scenario = (result.get("scenario") or {}).get("name", "runner")
        duration = f"{(result.get('totals') or {}).get('duration_s', 0.0):.3f}"
        root = ET.Element("testsuites", name="runner")
        suite = ET.SubElement(root, "testsuite", name=_text(scenario),
                              timestamp=_junit_timestamp(result.get("started_at", "")), time=duration)
        _properties(suite, result)
        thresholds = result.get("thresholds") or []
        checks = aggregated_checks(result)
        failures = sum(_threshold_case(suite, t) for t in thresholds)
        failures += sum(_check_case(suite, c) for c in checks)
        if not thresholds and not checks:
            failures += _completed_case(suite, result)
        failures += sum(_flow_case(suite, flow) for flow in shown_flows(result))
        errors = 0
        if result.get("interrupted"):
            signal = result.get("interrupt_signal") or "a signal"
            case = _case(suite, "runner.run", "run interrupted")
            message = f"run interrupted by {signal}: numbers cover only the part that ran"
            ET.SubElement(case, "error", message=message, type="interrupted").text = message
            errors = 1
        notes = list(result.get("notes") or []) + list((result.get("generator") or {}).get("reasons") or [])
        notes += [f"data {table.get('name', '')}: {data_usage(table)}"
                  for table in result.get("data") or [] if table.get("exhausted")]
        if notes:
            ET.SubElement(suite, "system-out").text = _text("\n".join(notes))
        tests = len(suite.findall("testcase"))
        for element in (root, suite):
            element.set("tests", str(tests))
            element.set("failures", str(failures))
            element.set("errors", str(errors))
            element.set("time", duration)
        suite.set("skipped", "0")
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
