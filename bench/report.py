"""The results table (console and markdown), the issue's targets marked met or missed.

Why separate: the numbers come from three places (two load generators and
the floor); the report lines them up per operation and concurrency and
computes the ratios the targets are stated in, the same way every run.
"""

from __future__ import annotations

import re
from typing import Any

READ_TARGET = 10.0  # reads and counts at c=16: throughput >= 10x, p99 <= 1/10
WRITE_TARGET = 5.0  # writes at c=16: throughput >= 5x, and no failed call
FLOOR_TARGET = 2.0  # ReadFlows, 200 rows, c=1: p50 within 2x of the floor
LARGE_P50_MS = 100.0  # at 1M runs: p50 under 100 ms
FLOOR_OP = "ReadFlows: no filter (200 rows)"
LARGE_OPS = ("CountFlows: with FAILED runs", "ReadFlows: FAILED runs since T")


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.{max(digits, 2)}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _errors(m: dict[str, Any] | None) -> str:
    if not m:
        return "–"
    parts = [f"{n} {kind}" for kind, n in sorted(m["errors"].items())]
    if m.get("unfinished"):
        parts.append(f"{m['unfinished']} unfinished")
    if m.get("exhausted"):
        parts.append("inputs exhausted")
    if m.get("note"):
        parts.append(m["note"])
    return ", ".join(parts) if parts else "0"


def _index(measurements: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(m["op"], m["concurrency"]): m for m in measurements}


def rows(backend: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per operation and concurrency, in the order they were run."""
    fs = _index(backend.get("flowservice", []))
    pf = _index(backend.get("prefect", []))
    floors = backend.get("floor", {})
    keys = list(fs) + [key for key in pf if key not in fs]
    table = []
    for op, concurrency in keys:
        f, p = fs.get((op, concurrency)), pf.get((op, concurrency))
        floor = floors.get(op) if concurrency == 1 else None
        table.append(
            {
                "op": op,
                "c": concurrency,
                "write": bool((f or p or {}).get("write")),
                "reference": bool((f or p or {}).get("reference")),
                "fs": f,
                "pf": p,
                "rps_ratio": _ratio(f["rps"] if f else None, p["rps"] if p else None),
                "p99_ratio": _ratio(f["p99_ms"] if f else None, p["p99_ms"] if p else None),
                "floor": floor,
            }
        )
    return table


HEADER = (
    "operation",
    "c",
    "FS req/s",
    "FS p50 ms",
    "FS p99 ms",
    "Prefect req/s",
    "Prefect p50 ms",
    "Prefect p99 ms",
    "req/s FS/Prefect",
    "p99 FS/Prefect",
    "floor p50 ms",
    "FS failed",
    "Prefect failed",
    "server CPU ms/call FS / Prefect",
    "result FS / Prefect",
)


def _cells(row: dict[str, Any]) -> list[str]:
    f, p, floor = row["fs"] or {}, row["pf"] or {}, row["floor"] or {}
    rr, pr = row["rps_ratio"], row["p99_ratio"]
    result = f"{f.get('result', '–')} / {p.get('result', '–')}"
    cpu = (
        f"{_num(f.get('server_cpu_ms_per_request'), 3)} / "
        f"{_num(p.get('server_cpu_ms_per_request'), 3)}"
    )
    return [
        row["op"],
        str(row["c"]),
        _num(f.get("rps")),
        _num(f.get("p50_ms")),
        _num(f.get("p99_ms")),
        _num(p.get("rps")),
        _num(p.get("p50_ms")),
        _num(p.get("p99_ms")),
        "–" if rr is None else f"{rr:.1f}×",
        "–" if pr is None else f"{pr:.3f}",
        floor.get("error", "–") if "p50_ms" not in floor else _num(floor["p50_ms"], 3),
        _errors(row["fs"]),
        _errors(row["pf"]),
        cpu,
        result,
    ]


def markdown_table(backend: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows(backend):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(lines)


def console_table(backend: dict[str, Any]) -> str:
    cells = [list(HEADER)] + [_cells(row) for row in rows(backend)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


# --- targets ---------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "n/a"}[ok]


def default_targets(backend: dict[str, Any]) -> list[str]:
    """The issue's targets for the default run, each met, missed or n/a, with its numbers."""
    out = []
    for row in rows(backend):
        f, p = row["fs"], row["pf"]
        if row["c"] != 16 or f is None or row["reference"]:
            continue
        if not row["write"]:
            ok = None
            if p and p["rps"] and p["p99_ms"] is not None and f["p99_ms"] is not None:
                ok = (
                    f["rps"] >= READ_TARGET * p["rps"]
                    and f["p99_ms"] * READ_TARGET <= p["p99_ms"]
                    and f["error_count"] == 0
                )
            out.append(
                f"- {_verdict(ok)} — {row['op']} (c=16): throughput {_x(row['rps_ratio'])} "
                f"(target ≥ 10×), p99 {_num(f['p99_ms'])} vs {_num(p and p['p99_ms'])} ms = "
                f"{_frac(row['p99_ratio'])} (target ≤ 0.1), FlowService failures "
                f"{f['error_count']}"
            )
        else:
            ok = None
            if p and p["rps"]:
                ok = f["rps"] >= WRITE_TARGET * p["rps"] and f["error_count"] == 0
            elif f["error_count"]:
                ok = False
            out.append(
                f"- {_verdict(ok)} — {row['op']} (c=16): throughput {_x(row['rps_ratio'])} "
                f"(target ≥ 5×); FlowService failed calls {f['error_count']} (target 0); "
                f"Prefect failed calls {p['error_count'] if p else '–'}"
            )
    for row in rows(backend):
        if row["op"] == FLOOR_OP and row["c"] == 1 and row["fs"] and row["floor"]:
            fs_p50, floor_p50 = row["fs"]["p50_ms"], row["floor"].get("p50_ms")
            ratio = _ratio(fs_p50, floor_p50)
            ok = None if ratio is None else ratio <= FLOOR_TARGET
            out.append(
                f"- {_verdict(ok)} — {FLOOR_OP} at c=1 within 2× of the floor: FlowService p50 "
                f"{_num(fs_p50)} ms, floor p50 {_num(floor_p50, 3)} ms = {_x(ratio)}"
            )
    return out


def large_targets(backends: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for name, backend in backends.items():
        for row in rows(backend):
            if row["op"] in LARGE_OPS and row["c"] == 1:
                f = row["fs"]
                p50 = f["p50_ms"] if f else None
                ok = None if p50 is None else p50 < LARGE_P50_MS and f["error_count"] == 0
                out.append(
                    f"- {_verdict(ok)} — {row['op']} on {name}, 1M flow runs: FlowService p50 "
                    f"{_num(p50)} ms (target < 100 ms)"
                )
    return out


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def _frac(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# --- the markdown document -------------------------------------------------------------


def section(results: dict[str, Any]) -> str:
    """The markdown of one run (default or large), between its own markers."""
    env, data, settings = results["environment"], results["dataset"], results["settings"]
    mode, key = results["mode"], results.get("section", results["mode"])
    title = "Default run" if mode == "default" else "Large run (1,000,000 flow runs)"
    if key != mode:
        title += ", on Prefect's schema alone (`--no-flowservice-indexes`)"
    lines = [
        f"<!-- bench:{key}:start -->",
        f"## {title}",
        "",
        f"Date: {env['date']} · command: `{settings['command']}`",
        "",
        "### Machine and versions",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in env["facts"].items()]
    lines += ["", "### Data set", ""]
    lines += [f"- {line}" for line in data["lines"]]
    lines += ["", "### How it was run", ""]
    lines += [f"- {line}" for line in settings["lines"]]
    for name, backend in results["backends"].items():
        lines += ["", f"### Results: {name}", "", markdown_table(backend), ""]
        for note in backend.get("notes", []):
            lines.append(f"- {note}")
    lines += ["", "### Targets", ""]
    if mode == "default":
        lines += default_targets(results["backends"]["SQLite"])
    else:
        lines += large_targets(results["backends"])
    lines += ["", "### The SQL FlowService sent, and its plans", ""]
    for name, backend in results["backends"].items():
        for op, text in backend.get("statements", {}).items():
            lines += [f"#### {name}: {op}", "", "```sql", text, "```", ""]
            for plan in backend.get("plans", {}).get(op, []):
                lines += ["Plan:", "", "```", plan, "```", ""]
    lines.append(f"<!-- bench:{key}:end -->")
    return "\n".join(lines)


DOCUMENT_HEAD = """# FlowService vs Prefect 3.9.1: benchmark results

Generated by `bench/run.py` (see bench/README.md). Each run replaces only its own
section below. FS = FlowService (gRPC, raw stub); Prefect = `prefect server start
--no-services` (REST, httpx). Latencies are over successful calls; failed calls are
counted separately, by kind. Ratios are FlowService / Prefect.
"""


def merge_document(existing: str | None, new_section: str, mode: str) -> str:
    """Replace this mode's section in the document (or append it)."""
    if not existing:
        return DOCUMENT_HEAD + "\n" + new_section + "\n"
    pattern = re.compile(
        rf"<!-- bench:{mode}:start -->.*?<!-- bench:{mode}:end -->", flags=re.DOTALL
    )
    if pattern.search(existing):
        return pattern.sub(lambda _: new_section, existing)
    return existing.rstrip() + "\n\n" + new_section + "\n"
