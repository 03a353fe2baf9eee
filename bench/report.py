"""Turning result rows into the printed table and the JSON file.

Kept apart from the measuring code so the table format can change without
touching how numbers are taken (and so both modes write JSON the same way).
"""

from __future__ import annotations

import json
from pathlib import Path


def add_ratios(results: list[dict]) -> None:
    """Each ok row's requests/s divided by wrk's on the same path and concurrency."""
    wrk = {(r["path"], r["concurrency"]): r["rps"] for r in results if r["client"] == "wrk" and r["status"] == "ok"}
    for r in results:
        base = wrk.get((r["path"], r["concurrency"]))
        r["ratio_to_wrk"] = round(r["rps"] / base, 3) if r["status"] == "ok" and base else None


def format_table(results: list[dict]) -> str:
    header = ("client", "conc", "path", "req/s", "vs wrk", "peak RSS MB", "notes")
    lines = []
    for r in results:
        if r["status"] == "ok":
            ratio = f"{r['ratio_to_wrk']:.2f}" if r["ratio_to_wrk"] is not None else "-"
            notes = "; ".join(n for n in (f"{r['errors']} errors" if r.get("errors") else "",
                                          r.get("count_warning", ""), r.get("cpu_note", ""),
                                          r.get("wall_note", "")) if n)
            cells = (r["client"], str(r["concurrency"]), r["path"], f"{r['rps']:,.0f}", ratio,
                     f"{r['peak_rss_mb']:.1f}", notes)
        else:
            cells = (r["client"], str(r["concurrency"]), r["path"], "-", "-", "-",
                     f"{r['status']}: {r['reason'][:90]}")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header[:-1])]
    numeric = {3, 4, 5}

    def render(cells) -> str:
        pairs = enumerate(zip(cells, widths, strict=False))  # the last cell (notes) has no width
        parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in pairs]
        return "  ".join(parts + [cells[-1]]).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  -----"
    return "\n".join([render(header), rule, *(render(c) for c in lines)])


def count_text(value: int | None) -> str:
    """A request count as printed next to a client's: thousands separated, '?' when the server gave none."""
    return "?" if value is None else f"{value:,}"


def write_json(path: Path, document: dict) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)


def format_goals(goals: list[dict]) -> str:
    """The ``goals`` summary: one line per number the issue asks for, its goal and whether it is met."""
    header = ("#", "number", "measured", "goal", "met")
    lines = [(str(g["item"]), g["what"], g["measured"], g.get("goal") or "-",
              {True: "yes", False: "NO", None: "-"}[g.get("met")]) for g in goals]
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]

    def render(cells) -> str:
        return "  ".join(c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), "  ".join("-" * w for w in widths), *(render(c) for c in lines)])
