"""
``make bench``: every benchmark, project beside anchor, measured in one run; prints one table.

The anchor is what a user would wire by hand without this provider: apache-airflow-providers-http
(``HttpSensor``, ``HttpSensorTrigger``, ``HttpHook``) on the same endpoints of the same sandbox.
Each scenario runs in a fresh process (``python -m benchmarks.<scenario>``), and the sandbox in
its own process where load matters. See docs/performance.md for what each row measures.

Usage::

    python benchmarks/run.py                # the table, also written to .bench/results.md
    python benchmarks/run.py --write-docs   # and into docs/performance.md, between its markers
    python benchmarks/run.py --quick        # a smoke run with small counts (not for the docs)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import run_scenario, sandbox_process  # noqa: E402
from benchmarks.report import Row, load_average, machine, results_markdown, write_docs  # noqa: E402

SCENARIOS = ("gate", "triggerer", "parse", "extraction", "guardrails")
WAIT_NAMES = {600: "10 min", 3600: "1 h", 21600: "6 h"}
MONTHS, EMPLOYERS = 12, 10


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def gate_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for wait, name in WAIT_NAMES.items():
        figures = result[str(wait)]
        rows.append(
            Row(
                f"Quota requests per gated wait of {name}",
                figures["project"]["requests"],
                figures["anchor"]["requests"],
                target="2",
                met=figures["project"]["requests"] == 2,
            )
        )
    for wait, name in WAIT_NAMES.items():
        figures = result[str(wait)]
        project, anchor = figures["project"]["slot_seconds"], figures["anchor"]["slot_seconds"]
        rows.append(
            Row(
                f"Worker-slot seconds held during a wait of {name}",
                project,
                anchor,
                unit=" s",
                digits=3,
                target="0 while waiting (< 1 s: the two checks)",
                met=project < 1.0,
            )
        )
    return rows


def triggerer_rows(results: dict[int, dict[str, dict[str, Any]]]) -> list[Row]:
    rows = []
    for count, sides in results.items():
        project, anchor = sides["project"], sides["anchor"]
        rows.append(
            Row(
                f"Quota requests at the reset, {count:,} triggers waiting on one account group",
                project["quota_requests"],
                anchor["quota_requests"] - count,  # the anchor's first requests (404) came before the wait
                digits=0,
                target="≤ 2",
                met=project["quota_requests"] <= 2 and project["fired"] == count,
            )
        )
        rows.append(
            Row(
                f"Last of {count:,} triggers fired, seconds after reset + grace + jitter (5 s)",
                project["last_event_after_reset_and_jitter_s"],
                anchor["last_event_after_reset_and_jitter_s"],
                unit=" s",
                ratio_text="-",  # below 0: the last trigger fired before the last wake it was due
                target="≤ 2 s",
                met=project["last_event_after_reset_and_jitter_s"] <= 2 and project["fired"] == count,
            )
        )
        rows.append(
            Row(
                f"Triggerer memory per trigger, {count:,} waiting (RSS growth / N)",
                project["kib_per_trigger"],
                anchor["kib_per_trigger"],
                unit=" KiB",
                target="≤ anchor",
                met=project["kib_per_trigger"] <= anchor["kib_per_trigger"],
            )
        )
        for phase, label in (("waiting_lag", "while waiting"), ("wake_lag", "as all wake")):
            p, a = project[phase], anchor[phase]
            all_fired = project["fired"] == count and anchor["fired"] == count
            suffix = "" if all_fired else f" (fired: project {project['fired']}, anchor {anchor['fired']} of {count})"
            rows.append(
                Row(
                    f"Event-loop lag {label}, {count:,} triggers (10 ms ticker){suffix}",
                    p["p99_ms"],
                    a["p99_ms"],
                    project_text=f"p99 {p['p99_ms']:.1f} · max {p['max_ms']:,.0f} ms",
                    anchor_text=f"p99 {a['p99_ms']:.1f} · max {a['max_ms']:,.0f} ms",
                    ratio_text=(f"{_ratio(p['p99_ms'], a['p99_ms'])} · {_ratio(p['max_ms'], a['max_ms'])}"),
                    target="p99 < 100 ms" if count == 1000 else "-",
                    met=(p["p99_ms"] < 100 and project["fired"] == count) if count == 1000 else None,
                )
            )
    return rows


def _ratio(project: float, anchor: float) -> str:
    from benchmarks.report import format_ratio

    # Below a tenth of a millisecond a 10 ms ticker cannot tell the two apart.
    return format_ratio(max(project, 0.1), max(anchor, 0.1))


def parse_rows(result: dict[str, Any]) -> list[Row]:
    project, anchor = result["project"], result["anchor"]
    return [
        Row(
            f"DAG-parse import time on top of airflow.sdk (median of {len(project['samples_ms'])} fresh processes)",
            project["median_ms"],
            anchor["median_ms"],
            unit=" ms",
            target="≤ anchor",
            met=project["median_ms"] <= anchor["median_ms"],
        )
    ]


def extraction_rows(result: dict[str, Any]) -> list[Row]:
    months, employers = result["months"], result["employers"]
    project, anchor = result["project"], result["anchor"]
    shape = f"{months} months x {employers} employers"
    p500, a500 = project["with_one_500"], anchor["with_one_500"]
    rows = [
        Row(
            f"Token requests, {shape}",
            project["token_requests"],
            anchor["token_requests"],
            target=f"E = {employers}",
            met=project["token_requests"] == employers,
        ),
        Row(
            f"Indeed API requests, {shape}",
            project["api_requests"],
            anchor["api_requests"],
            target=f"M x E = {months * employers}",
            met=project["api_requests"] == months * employers,
        ),
        Row(
            f"Token + API requests, {shape}, one transient HTTP 500",
            p500["token_requests"] + p500["api_requests"],
            a500["token_requests"] + a500["api_requests"],
            project_text=f"{p500['token_requests']} + {p500['api_requests']}",
            anchor_text=f"{a500['token_requests']} + {a500['api_requests']}",
            target=f"{employers} + {months * employers + 1}",
            met=p500["token_requests"] == employers and p500["api_requests"] == months * employers + 1,
        ),
        Row(
            "Extraction throughput against the sandbox (months x employers per s)",
            project["per_second"],
            anchor["per_second"],
            unit="/s",
            lower_is_better=False,
        ),
        Row(
            "Worker CPU per month x employer",
            project["cpu_ms_per_call"],
            anchor["cpu_ms_per_call"],
            unit=" ms",
            digits=2,
        ),
    ]
    warehouse = result["warehouse"]
    for name, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        if name not in warehouse:
            rows.append(
                Row(
                    f"Warehouse write per row, {label}",
                    0,
                    0,
                    project_text="skipped",
                    anchor_text="skipped",
                    ratio_text="-",
                    target=f"({warehouse.get('postgres_skipped')})",
                )
            )
            continue
        figures = warehouse[name]
        rows.append(
            Row(
                f"Warehouse write per row, {label} ({warehouse['writes']} upserts of {months} rows)",
                figures["project_ms_per_row"],
                figures["anchor_ms_per_row"],
                unit=" ms",
                digits=2,
            )
        )
    return rows


def guardrails_rows(result: dict[str, Any]) -> list[Row]:
    employers, days = result["employers"], result["wait_days"]
    budget, wait = result["budget"], result["wait"]
    return [
        Row(
            f"Indeed budget check of {employers} employers: token + usage requests",
            budget["project"]["token_requests"] + budget["project"]["usage_requests"],
            budget["anchor"]["token_requests"] + budget["anchor"]["usage_requests"],
            project_text=f"{budget['project']['token_requests']} + {budget['project']['usage_requests']}",
            anchor_text=f"{budget['anchor']['token_requests']} + {budget['anchor']['usage_requests']}",
            target=f"E + E = {employers} + {employers}",
            met=budget["project"] == {"token_requests": employers, "usage_requests": employers},
        ),
        Row(
            f"Indeed API-quota wait of {days:g} days to the month rollover: usage requests",
            wait["project"]["usage_requests"],
            wait["anchor"]["usage_requests"],
            target="2",
            met=wait["project"]["usage_requests"] == 2,
        ),
        Row(
            f"Indeed API-quota wait of {days:g} days: token requests (worker + triggerer)",
            wait["project"]["token_requests"],
            wait["anchor"]["token_requests"],
            target="2",
            met=wait["project"]["token_requests"] == 2,
        ),
    ]


def run_triggerer(counts: tuple[int, ...]) -> dict[int, dict[str, dict[str, Any]]]:
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for count in counts:
        results[count] = {}
        for impl in ("project", "anchor"):
            # The anchor's triggers each make one request before they sleep: give that burst time to settle.
            wait = 10.0 if impl == "project" else 12.0 + count * 0.0035
            log(f"triggerer: {count:,} x {impl} (waking after {wait:.0f} s)")
            with sandbox_process() as url:
                result = run_scenario(
                    "triggerer",
                    "--impl",
                    impl,
                    "--count",
                    str(count),
                    "--sandbox",
                    url,
                    "--wait",
                    str(wait),
                    "--deadline",
                    "240",
                    timeout=900,
                )
            if result.get("settle_overlapped_wake"):
                log(f"warning: {impl} x {count}: the start burst overlapped the first wake")
            results[count][impl] = result
    return results


def before_after(counts: tuple[int, ...]) -> str:
    """The wake of N project triggers with the async client before the fix and after it, as a table."""
    lines = [
        "| triggers | client | fired | failed or unfinished | first wake to last event | lag p99 · max as all wake |",
        "|---|---|---|---|---|---|",
    ]
    for count in counts:
        for label, extra in (("before (pool of 100, queue in httpx)", ["--legacy-client"]), ("after", [])):
            log(f"before/after: {count:,} project triggers, {label}")
            # 10 s to the wake, at most 240 s from the wake to the last event, plus start-up: past
            # 420 s the event loop is wedged (the old client's pool could not even cancel its queue).
            limit = 420
            with sandbox_process() as url:
                try:
                    result = run_scenario(
                        "triggerer",
                        "--impl",
                        "project",
                        "--count",
                        str(count),
                        "--sandbox",
                        url,
                        "--wait",
                        "10",
                        "--deadline",
                        "240",
                        *extra,
                        timeout=limit,
                    )
                except subprocess.TimeoutExpired:
                    lines.append(f"| {count:,} | {label} | - | - | not finished, killed after {limit} s | - |")
                    continue
            lag = result["wake_lag"]
            lines.append(
                f"| {count:,} | {label} | {result['fired']:,} | {result['failures'] + result['unfinished']:,} | "
                f"{result['first_wake_to_last_event_s']:.1f} s | "
                f"p99 {lag['p99_ms']:,.1f} · max {lag['max_ms']:,.0f} ms |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the table in docs/performance.md")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run (not for the docs)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument(
        "--before-after",
        action="store_true",
        help="only the wake of 1,000 and 10,000 project triggers with the async client before and after the fix",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if args.write_docs and (args.quick or (only != set(SCENARIOS) and not args.before_after)):
        parser.error("--write-docs needs a full run (no --quick, no --only)")
    if args.before_after:
        load_start = load_average()
        text = before_after((100, 1000) if args.quick else (1000, 10000))
        text += (
            f"\n\nMeasured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on the machine described below; "
            f"load average at the start: {load_start}, at the end: {load_average()}."
        )
        print(text)
        out = REPO / ".bench"
        out.mkdir(exist_ok=True)
        (out / "before_after.md").write_text(text + "\n")
        if args.write_docs:
            log(f"written to {write_docs(text, 'before-after')}")
        return 0

    started = time.monotonic()
    info: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_start": load_average(),
        "machine": machine(),
    }
    cores = os.cpu_count() or 1
    if os.getloadavg()[0] > cores / 2:
        log(f"warning: load average {info['load_start']} on {cores} cores: figures will be noisy")
    raw: dict[str, Any] = {}
    rows: list[Row] = []
    if "gate" in only:
        log("gated waits in simulated time (10 min, 1 h, 6 h)")
        raw["gate"] = run_scenario("gate")
        rows += gate_rows(raw["gate"])
    if "triggerer" in only:
        counts = (100, 1000) if args.quick else (1000, 10000)
        raw["triggerer"] = run_triggerer(counts)
        rows += triggerer_rows(raw["triggerer"])
    if "parse" in only:
        repeats = 3 if args.quick else 7
        log(f"DAG-parse import time, {repeats} fresh processes per side")
        raw["parse"] = run_scenario("parse_cost", "--repeats", str(repeats))
        rows += parse_rows(raw["parse"])
    if "extraction" in only:
        log(f"extraction of {MONTHS} months x {EMPLOYERS} employers, and warehouse writes")
        with sandbox_process() as url:
            raw["extraction"] = run_scenario(
                "extraction", "--sandbox", url, "--months", str(MONTHS), "--employers", str(EMPLOYERS)
            )
        rows += extraction_rows(raw["extraction"])
    if "guardrails" in only:
        log(f"Indeed guardrails: a budget check of {EMPLOYERS} employers, a 31-day API-quota wait in simulated time")
        raw["guardrails"] = run_scenario("guardrails", "--employers", str(EMPLOYERS), "--wait-days", "31")
        rows += guardrails_rows(raw["guardrails"])
    info["load_end"] = load_average()
    info["duration_s"] = time.monotonic() - started

    text = results_markdown(rows, info)
    print(text)
    out = REPO / ".bench"
    out.mkdir(exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"info": info, "raw": raw}, indent=2, default=str) + "\n")
    log(f"written to {out / 'results.md'} (raw figures in results.json)")
    if args.write_docs:
        log(f"table written to {write_docs(text)}")
    failed = [row.what for row in rows if row.met is False]
    if failed:
        log(f"targets not met: {'; '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
