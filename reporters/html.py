"""HTML reporter: one self-contained page to attach to a CI run or a ticket.

The page must open anywhere, offline and years later, so it has no external
resources at all: inline CSS, charts drawn as inline SVG in Python
(:mod:`runner.reporters.svg`), no script. A Content-Security-Policy meta tag
forbids any network fetch, so a future edit that adds one fails visibly.
Every string that comes from the user or the target (scenario, stage,
request and check names, expressions, error classes...) goes through
:func:`html.escape`. Like every reporter it only reads the result dict, so a
saved JSON result renders the same page later (``runner report``).
"""

from __future__ import annotations

import datetime as _dt
from html import escape
from typing import Any

from runner.metrics.quantiles import INTERVAL_KEYS, LATENCY_KEYS

from runner.metrics.recorder import PHASES

from .flows import data_usage, failed_share, shown_flows, stage_flows
from .phases import K6_NAMES, PHASE_MEANING, measured, phase_scopes
from .junit import aggregated_checks, format_value, scope_label
from .svg import Band, BarSeries, Series, bar_chart, line_chart

_PERCENTILES = INTERVAL_KEYS
_PERCENTILE_LABELS = {"p999": "p99.9"}
_LATENCY_COLS = LATENCY_KEYS
_STAGE_COLORS = ("#6366f1", "#0ea5e9", "#14b8a6", "#f59e0b", "#ec4899")

_CSS = """
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f1f5f9;--card:#fff;--pass:#15803d;--fail:#b91c1c;
--warn:#b45309;--accent:#4f46e5}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 24px 40px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;margin-bottom:8px}
h1{font-size:26px;margin:0 0 4px;letter-spacing:-.01em;word-break:break-word}
h1 small{font-weight:500;color:var(--muted);font-size:15px;margin-left:6px}
h2{font-size:16px;margin:0 0 12px;letter-spacing:.01em}
.meta{color:var(--muted);display:flex;flex-wrap:wrap;gap:4px 18px}
.meta b{color:var(--fg);font-weight:600}
.badge{display:inline-block;padding:3px 11px;border-radius:999px;font-weight:700;font-size:12px;
letter-spacing:.06em}
.badge.big{font-size:20px;padding:8px 22px}
.pass{background:#dcfce7;color:var(--pass)}.fail{background:#fee2e2;color:var(--fail)}
.neutral{background:#e2e8f0;color:#334155}.warnb{background:#fef3c7;color:var(--warn)}
.banner{border-radius:10px;padding:10px 16px;margin:12px 0;border:1px solid}
.banner.fail{border-color:#fecaca}.banner.warn{background:#fffbeb;border-color:#fde68a;color:#78350f}
.banner.ok{background:#f0fdf4;border-color:#bbf7d0;color:#14532d}
.banner ul{margin:4px 0 0;padding-left:20px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:18px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 16px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.card .v{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.card .v small{font-size:13px;color:var(--muted);font-weight:500;margin-left:3px}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:18px 20px;margin:16px 0;
box-shadow:0 1px 2px rgba(15,23,42,.04)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13px}
th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th.l,td.l{text-align:left}
td.wrap{white-space:normal}
tbody tr:hover{background:#f8fafc}
tr.total td{font-weight:650;border-top:2px solid #cbd5e1}
tr.sub td{color:#475569;font-size:13px}
tr.sub td.l{padding-left:28px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f5f9;padding:1px 6px;
border-radius:5px}
.muted{color:var(--muted)}
.bad{color:var(--fail);font-weight:600}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.chips span{display:inline-block;background:#f1f5f9;border-radius:6px;padding:2px 8px;margin:2px 6px 2px 0}
.meter{display:inline-block;width:90px;height:8px;background:#fee2e2;border-radius:4px;vertical-align:middle;
margin-left:8px;overflow:hidden}
.meter i{display:block;height:100%;background:#22c55e}
.meter.use{background:#e2e8f0}.meter.use i{background:#6366f1}
svg.chart{width:100%;height:auto;display:block}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media (max-width:800px){.grid2{grid-template-columns:1fr}header{flex-direction:column}}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "–"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


def _when(iso: str) -> str:
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso or "unknown"
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _badge(result: dict[str, Any]) -> str:
    passed = result.get("passed")
    if passed is True:
        return '<span class="badge big pass">PASS</span>'
    if passed is False:
        return '<span class="badge big fail">FAIL</span>'
    return '<span class="badge big neutral" title="this result has no pass/fail verdict">NO VERDICT</span>'


def _banners(result: dict[str, Any]) -> str:
    out = []
    if result.get("interrupted"):
        out.append(f'<div class="banner fail"><b>Interrupted</b> by {_e(result.get("interrupt_signal") or "a signal")}'
                   f": the numbers cover only the part of the run that happened.</div>")
    aborted = result.get("aborted")
    if aborted:
        out.append(f'<div class="banner fail"><b>Aborted</b> at {aborted.get("at_s", 0):.1f} s: '
                   f'{_e(aborted.get("reason", ""))}</div>')
    generator = result.get("generator") or {}
    verdict = generator.get("verdict")
    if verdict:
        kind = "ok" if verdict == "ok" else "warn"
        lag = generator.get("loop_lag_p99_ms", 0)
        facts = (f"peak RSS {generator.get('peak_rss_mb', 0):.0f} MB · CPU {generator.get('cpu_s', 0):.1f} s in "
                 f"{generator.get('processes', 1)} process(es) · loop lag p99 {lag:.1f} ms · "
                 f"{generator.get('event_loop', '')}")
        reasons = "".join(f"<li>{_e(r)}</li>" for r in generator.get("reasons") or [])
        out.append(f'<div class="banner {kind}"><b>Load generator: {_e(verdict.upper())}</b> '
                   f'<span class="muted">{_e(facts)}</span>{f"<ul>{reasons}</ul>" if reasons else ""}</div>')
    for note in result.get("notes") or []:
        out.append(f'<div class="banner warn">{_e(note)}</div>')
    return "".join(out)


def _cards(totals: dict[str, Any]) -> str:
    latency = totals.get("latency_ms") or {}
    requests = totals.get("requests", 0)
    items = [
        ("requests", f"{requests:,}", ""),
        ("throughput", f"{totals.get('rps', 0):,.0f}", "req/s"),
        ("p95 latency", _ms(latency.get("p95")), "ms"),
        ("p99 latency", _ms(latency.get("p99")), "ms"),
        ("error rate", _pct(totals.get("failed", 0), requests), ""),
        ("dropped", f"{totals.get('dropped', 0):,}", ""),
    ]
    cells = "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}<small>{u}</small></div></div>'
                    for k, v, u in items)
    return f'<div class="cards">{cells}</div>'


def _totals(totals: dict[str, Any]) -> str:
    requests = totals.get("requests", 0)
    counts = [("requests", _int(requests)), ("ok", _int(totals.get("ok", 0))),
              ("failed", _int(totals.get("failed", 0))), ("error rate", _pct(totals.get("failed", 0), requests)),
              ("dropped", _int(totals.get("dropped", 0))), ("throughput", f"{totals.get('rps', 0):,.1f} req/s"),
              ("duration", f"{totals.get('duration_s', 0):,.2f} s"), ("body bytes", _bytes(totals.get("bytes", 0)))]
    if totals.get("skipped"):
        counts.insert(5, ("skipped steps", _int(totals["skipped"])))
    left = "".join(f'<tr><td class="l">{k}</td><td>{v}</td></tr>' for k, v in counts)
    head = "".join(f"<th>{_PERCENTILE_LABELS.get(k, k)}</th>" for k in _LATENCY_COLS)
    rows = ""
    for label, key in (("latency", "latency_ms"), ("service time", "service_time_ms")):
        block = totals.get(key) or {}
        rows += f'<tr><td class="l">{label}</td>' + "".join(f"<td>{_ms(block.get(k))}</td>" for k in _LATENCY_COLS)
        rows += "</tr>"
    codes = " ".join(f"<span>{_e(c)}: {n:,}</span>" for c, n in (totals.get("status_codes") or {}).items())
    errors = " ".join(f'<span class="bad">{_e(c)}: {n:,}</span>' for c, n in (totals.get("errors") or {}).items())
    return (f'<section><h2>Totals</h2><div class="grid2"><table><tbody>{left}</tbody></table><div>'
            f'<div class="scroll"><table><thead><tr><th class="l">ms</th>{head}</tr></thead><tbody>{rows}'
            f'</tbody></table></div><p class="muted">Latency is measured from the intended send time (open model) '
            f'or the send (closed); service time from the actual send.</p>'
            f'<p class="chips"><b>status codes</b> {codes or "none"}</p>'
            f'<p class="chips"><b>no response</b> {errors or "none"}</p></div></div></section>')


def _load(stage: dict[str, Any]) -> str:
    """What the stage asked for, as HTML (no user strings in it)."""
    rate = stage.get("rate")
    if rate:
        ramp = (f"{rate['requested_from']:,.0f}→{rate['requested_to']:,.0f}/s"
                if rate["requested_from"] != rate["requested_to"] else f"{rate['requested_mean']:,.0f}/s")
        met = "" if rate.get("met", True) else ' <span class="bad">not met</span>'
        return f"open {ramp}{met}"
    return f"closed, {stage.get('concurrency', '?'):,} workers" if stage.get("concurrency") else "closed"


def _stage_cells(block: dict[str, Any], skipped: bool = False) -> str:
    """A stage, request or total row; ``skipped`` adds the skipped-steps cell after ``dropped``."""
    latency = block.get("latency_ms") or {}
    requests = block.get("requests", 0)
    failed = block.get("failed", 0)
    cells = [_int(requests), _int(block.get("ok", 0)), f'<span class="{"bad" if failed else ""}">{failed:,}</span>',
             _int(block.get("dropped", 0))]
    if skipped:
        cells.append(_skipped_cell(block.get("skipped", 0)))
    cells += [_pct(failed, requests), f"{block.get('rps', 0):,.1f}",
              f"{block.get('duration_s', 0):,.2f}"] + [_ms(latency.get(k)) for k in ("p50", "p95", "p99", "max")]
    return "".join(f"<td>{c}</td>" for c in cells)


def _skipped_cell(skipped: int) -> str:
    """Skipped steps, marked as a problem: each one is a request the scenario meant to send."""
    return f'<span class="bad">{skipped:,}</span>' if skipped else "0"


def _stages(result: dict[str, Any]) -> str:
    """The stage and request table; a skipped column only when some flow step was skipped."""
    totals = result.get("totals") or {}
    skipped = bool(totals.get("skipped"))
    head = ("<tr><th class='l'>stage / request</th><th class='l'>load</th><th>requests</th><th>ok</th><th>failed</th>"
            f"<th>dropped</th>{'<th>skipped</th>' if skipped else ''}<th>error %</th><th>req/s</th><th>secs</th>"
            "<th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>")
    rows = []
    for stage in result.get("stages") or []:
        flag = ' <span class="badge fail">INTERRUPTED</span>' if stage.get("interrupted") else ""
        rows.append(f'<tr><td class="l"><b>{_e(stage["name"])}</b>{flag}</td><td class="l wrap">{_load(stage)}</td>'
                    f"{_stage_cells(stage, skipped)}</tr>")
        for request in stage.get("by_request") or []:
            rows.append(f'<tr class="sub"><td class="l">{_e(request["name"])}</td><td></td>'
                        f"{_stage_cells(request, skipped)}</tr>")
    rows.append(f'<tr class="total"><td class="l">total</td><td></td>{_stage_cells(totals, skipped)}</tr>')
    note = (" Skipped: flow steps not sent because a capture earlier in the iteration failed."
            if skipped else "")
    return (f'<section><h2>Stages</h2><div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}'
            f'</tbody></table></div><p class="muted">Latencies in ms; every percentile of the whole run is under '
            f'Totals.{note}</p></section>')


def _phases(result: dict[str, Any]) -> str:
    """Where each stage's and the run's time went: a row per phase, every latency statistic and its count.

    A phase without a value gets dashes, not zeros (``tls`` on plain http).
    Omitted for results written before phases were measured.
    """
    scopes = phase_scopes(result)
    if not scopes:
        return ""
    head = ("<tr><th class='l'>stage</th><th class='l'>phase</th><th>count</th>"
            + "".join(f"<th>{_PERCENTILE_LABELS.get(k, k)}</th>" for k in _LATENCY_COLS) + "</tr>")
    rows = []
    for label, _, phases in scopes:
        name = "total" if label == "total" else label.removeprefix("stage ")
        for position, phase in enumerate(PHASES):
            numbers = phases.get(phase) or {}
            first = (f"<td class='l' rowspan='{len(PHASES)}'><b>{_e(name)}</b></td>" if position == 0 else "")
            cells = [_ms(numbers.get(k)) if measured(numbers) else "–" for k in _LATENCY_COLS]
            rows.append(f"<tr>{first}"
                        f"<td class='l' title='{_e(PHASE_MEANING[phase])} (k6: {K6_NAMES[phase]})'>{phase}</td>"
                        f"<td>{_int(numbers.get('count', 0))}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                        + "</tr>")
    meaning = "; ".join(f"<b>{phase}</b>: {_e(PHASE_MEANING[phase])} (k6 <code>{K6_NAMES[phase]}</code>)"
                        for phase in PHASES)
    return (f'<section><h2>Timing phases</h2><div class="scroll"><table><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div><p class="muted">Milliseconds. {meaning}. '
            f'connect and tls count connections opened, not requests: a request on a reused keep-alive '
            f'connection adds no value to them.</p></section>')


def _flow_cells(flow: dict[str, Any]) -> str:
    duration = flow.get("iteration_duration_ms") or {}
    failed, failed_requests = flow.get("iterations_failed", 0), flow.get("failed", 0)
    cells = [_int(flow.get("iterations", 0)), f'<span class="{"bad" if failed else ""}">{failed:,}</span>',
             failed_share(flow), f"{flow.get('iterations_per_s', 0):,.1f}", _int(flow.get("dropped", 0)),
             _int(flow.get("requests", 0)), _int(flow.get("ok", 0)),
             f'<span class="{"bad" if failed_requests else ""}">{failed_requests:,}</span>',
             _skipped_cell(flow.get("skipped", 0))] + [_ms(duration.get(k)) for k in ("p50", "p95", "p99", "max")]
    return "".join(f"<td>{c}</td>" for c in cells)


def _flows(result: dict[str, Any]) -> str:
    """Per-flow iterations, laid out like the stage table: a row per flow, a sub-row per stage.

    Omitted for a plain ``flow:`` list, whose one implicit flow would repeat
    the stage table's totals (see :mod:`runner.reporters.flows`).
    """
    flows = shown_flows(result)
    if not flows:
        return ""
    stages = result.get("stages") or []
    head = ("<tr><th class='l'>flow / stage</th><th>iterations</th><th>failed</th><th>failed %</th>"
            "<th>iter/s</th><th>dropped</th><th>requests</th><th>req ok</th><th>req failed</th><th>skipped</th>"
            "<th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>")
    rows = []
    for flow in flows:
        name = flow.get("name", "")
        rows.append(f'<tr><td class="l"><b>{_e(name)}</b></td>{_flow_cells(flow)}</tr>')
        if len(stages) > 1:
            for stage in stages:
                part = stage_flows(stage, name)
                if part is not None:
                    rows.append(f'<tr class="sub"><td class="l">{_e(stage.get("name", ""))}</td>'
                                f"{_flow_cells(part)}</tr>")
    return (f'<section><h2>Flows</h2><div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}'
            f'</tbody></table></div><p class="muted">An iteration failed when any of its requests failed. '
            f'Durations (ms) are of whole iterations, think time included; skipped steps were not sent because '
            f'a capture earlier in the iteration failed.</p></section>')


def _data(result: dict[str, Any]) -> str:
    """Each data table: how many rows the run used, and whether a unique table ran dry."""
    tables = result.get("data") or []
    if not tables:
        return ""
    rows = []
    for table in tables:
        count, used = table.get("rows", 0), table.get("used", 0)
        share = min(used / count, 1.0) if count else 0.0
        status = ('<span class="badge fail">EXHAUSTED</span>' if table.get("exhausted")
                  else '<span class="badge neutral">ok</span>')
        rows.append(f"<tr><td class='l'><b>{_e(table.get('name', ''))}</b></td>"
                    f"<td class='l wrap muted'>{_e(table.get('file', ''))}</td>"
                    f"<td class='l'>{_e(table.get('mode', ''))} per {_e(table.get('per', ''))}</td>"
                    f"<td>{_int(count)}</td><td>{_int(used)}<span class='meter use'>"
                    f"<i style='width:{share * 100:.1f}%'></i></span></td><td class='l'>{status}</td>"
                    f"<td class='l wrap'>{_e(data_usage(table))}</td></tr>")
    return (f"<section><h2>Data</h2><div class='scroll'><table><thead><tr><th class='l'>table</th>"
            f"<th class='l'>file</th><th class='l'>mode</th><th>rows</th><th>used</th><th class='l'>status</th>"
            f"<th class='l'>usage</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            f"<p class='muted'>Used: rows handed to virtual users, in all processes. An exhausted unique table "
            f"stopped the users that needed another row.</p></section>")


def _status(ok: bool) -> str:
    return '<span class="badge pass">PASS</span>' if ok else '<span class="badge fail">FAIL</span>'


def _thresholds(result: dict[str, Any]) -> str:
    thresholds = result.get("thresholds")
    if not thresholds:
        return ('<section><h2>Thresholds</h2><p class="muted">No thresholds were defined, so the run has no '
                'pass/fail criteria.</p></section>') if thresholds is not None else ""
    rows = []
    for t in thresholds:
        unit = t.get("unit")
        window = f"{t['window_s']:g} s" if t.get("window_s") else ""
        note = " · ".join(_e(x) for x in (t.get("reason"), t.get("source")) if x)
        measured = format_value(t.get("actual"), unit)
        rows.append(f"<tr><td class='l'>{_status(bool(t.get('passed')))}</td><td class='l'><code>"
                    f"{_e(t.get('expression', ''))}</code></td><td class='l'>{_e(scope_label(t))}</td>"
                    f"<td class='{'' if t.get('passed') else 'bad'}'>{_e(measured)}</td>"
                    f"<td>{_e(t.get('op', ''))} {_e(format_value(t.get('expected'), unit))}</td>"
                    f"<td>{window}</td><td class='l wrap muted'>{note}</td></tr>")
    passed = sum(1 for t in thresholds if t.get("passed"))
    return (f"<section><h2>Thresholds <span class='muted'>· {passed} of {len(thresholds)} passed</span></h2>"
            f"<div class='scroll'><table><thead><tr><th class='l'>result</th><th class='l'>expression</th>"
            f"<th class='l'>scope</th><th>measured</th><th>expected</th><th>window</th><th class='l'>detail</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>")


def _checks(result: dict[str, Any]) -> str:
    checks = aggregated_checks(result)
    if not checks:
        return ""
    rows = []
    for check in checks:
        passes, fails = check.get("passes", 0), check.get("fails", 0)
        total = passes + fails
        share = passes / total if total else 1.0
        rows.append(f"<tr><td class='l'>{_status(fails == 0)}</td><td class='l'>{_e(check.get('request', ''))}</td>"
                    f"<td class='l'>{_e(check['name'])}</td><td>{passes:,}</td>"
                    f"<td class='{'bad' if fails else ''}'>{fails:,}</td><td>{_pct(passes, total)}"
                    f"<span class='meter'><i style='width:{share * 100:.1f}%'></i></span></td></tr>")
    return (f"<section><h2>Checks</h2><div class='scroll'><table><thead><tr><th class='l'>result</th>"
            f"<th class='l'>request</th><th class='l'>check</th><th>passed</th><th>failed</th><th>pass rate</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>")


def _stage_offsets(result: dict[str, Any]) -> list[float]:
    """Seconds from the run start to each stage start, so stage series share one time axis."""
    stages = result.get("stages") or []
    try:
        origin = _dt.datetime.fromisoformat(stages[0]["started_at"])
        return [(_dt.datetime.fromisoformat(s["started_at"]) - origin).total_seconds() for s in stages]
    except (IndexError, KeyError, TypeError, ValueError):
        offsets, clock = [], 0.0
        for stage in stages:
            offsets.append(clock)
            clock += stage.get("duration_s", 0.0)
        return offsets


def _charts(result: dict[str, Any]) -> str:
    """Time charts on one run-wide axis, each stage a shaded band.

    Points sit at the middle of their interval. A stage's last interval
    usually extends past the stage's end (the bucket is fixed-width), so its
    rates are taken over the part the stage actually ran; dividing by the
    full width would draw a cliff that never happened. When that part is
    under a quarter of the interval the rate is left out: a few requests
    over a few milliseconds give a spike that says nothing (the stage table
    has the stage's real rate).
    """
    stages = result.get("stages") or []
    offsets = _stage_offsets(result)
    bands, lat = [], {k: [] for k in ("p50", "p90", "p99")}
    rps, errors, dropped = [], [], []
    for stage, offset in zip(stages, offsets):
        series = stage.get("timeseries") or []
        duration = stage.get("duration_s", 0.0)
        bands.append(Band(offset, offset + (duration or (series[-1]["t"] if series else 0.0)), stage["name"]))
        previous = 0.0
        for point in series:
            start, end = previous, point["t"]
            previous = point["t"]
            if start < duration < end:  # the stage ended inside this bucket: rate over the part it ran
                end = duration
            width = end - start or 1.0
            x = offset + (start + end) / 2
            completed = point.get("ok", 0) + point.get("failed", 0)
            for key in lat:
                lat[key].append((x, point["latency_ms"][key]) if completed else None)
            if width < 0.25 * (point["t"] - start):  # a sliver: a rate over it is noise
                rps.append(None), errors.append(None), dropped.append(None)
                continue
            rps.append((x, completed / width))
            errors.append((x, point.get("failed", 0) / width))
            dropped.append((x, point.get("dropped", 0) / width))
        for line in (*lat.values(), rps, errors, dropped):
            line.append(None)
    parts = []
    if any(p for p in rps):
        latency = [Series("p50", "#2563eb", lat["p50"]), Series("p90", "#f59e0b", lat["p90"]),
                   Series("p99", "#dc2626", lat["p99"])]
        throughput = [Series("requests/s", "#0d9488", rps, area=True),
                      Series("errors/s", "#dc2626", errors, area=True)]
        if any(p and p[1] for p in dropped):
            throughput.append(Series("dropped/s", "#f59e0b", dropped, dash="5 4"))
        parts.append(f"<section><h2>Latency over time</h2>{line_chart(latency, y_unit='ms', bands=bands)}</section>")
        parts.append(f"<section><h2>Throughput and errors over time</h2>"
                     f"{line_chart(throughput, y_unit='req/s', bands=bands)}<p class='muted'>Completed requests "
                     f"per second; a stage's final interval is left out when the stage ran for less than a quarter "
                     f"of it.</p></section>")
    parts.append(_percentile_bars(result))
    return "".join(parts)


def _percentile_bars(result: dict[str, Any]) -> str:
    labels = [_PERCENTILE_LABELS.get(k, k) for k in _PERCENTILES]

    def values(block: dict[str, Any]) -> list[float]:
        latency = block.get("latency_ms") or {}
        return [float(latency.get(k, 0.0)) for k in _PERCENTILES]

    series = [BarSeries("total", "#4f46e5", values(result.get("totals") or {}))]
    stages = result.get("stages") or []
    if 1 < len(stages) <= len(_STAGE_COLORS):
        series = [BarSeries(f"stage {s['name']}", c, values(s)) for s, c in zip(stages, _STAGE_COLORS[1:])]
        series.insert(0, BarSeries("total", "#4f46e5", values(result.get("totals") or {})))
    return f"<section><h2>Latency percentiles</h2>{bar_chart(labels, series, y_unit='ms', value_format=_ms)}</section>"


class HtmlReporter:
    """Renders the result dict as one self-contained HTML page."""

    name = "html"

    def render(self, result: dict[str, Any]) -> bytes:
        scenario = result.get("scenario") or {}
        engine = result.get("engine") or {}
        name = scenario.get("name", "run")
        meta = [("target", result.get("target", "")), ("engine", engine.get("name", "")),
                ("started", _when(result.get("started_at", ""))),
                ("duration", f"{(result.get('totals') or {}).get('duration_s', 0):.2f} s"),
                ("source", scenario.get("source", "")), ("runner", result.get("runner_version", ""))]
        meta_html = "".join(f"<span>{k} <b>{_e(v)}</b></span>" for k, v in meta if v)
        body = (f"<header><div><h1>{_e(name)}<small>load test report</small></h1>"
                f'<div class="meta">{meta_html}</div>'
                f'<div class="meta" title="why this engine">{_e(engine.get("reason", ""))}</div></div>'
                f"<div>{_badge(result)}</div></header>"
                f"{_banners(result)}{_cards(result.get('totals') or {})}{_thresholds(result)}{_checks(result)}"
                f"{_charts(result)}{_stages(result)}{_phases(result)}{_flows(result)}{_data(result)}"
                f"{_totals(result.get('totals') or {})}"
                f"<footer>generated by runner {_e(result.get('runner_version', ''))} from the result of "
                f"{_e(_when(result.get('finished_at', '')))}</footer>")
        page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width,initial-scale=1'>"
                "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
                f"<title>{_e(name)} · runner report</title><style>{_CSS}</style></head>"
                f"<body><main>{body}</main></body></html>\n")
        return page.encode()
