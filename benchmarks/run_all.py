"""Run every benchmark and write one table, ``benchmarks/RESULTS.md``: the figures the README and docs quote.

Each benchmark runs as its own process, as documented in its docstring, with the arguments below (``--quick``:
shorter runs, for a smoke test of the table, not for quoting). Its figures arrive through
:func:`_results.record` (a JSON line each, in the file named by ``EE_BENCH_RESULTS``); its printed output is kept
in ``--logs``. The table gives, per figure: the goal, the median (with ``--repeat N``: over the N runs; else the
benchmark's own median), min–max (over the runs, or over the samples the benchmark took), the baseline it is
compared with and the ratio, and the machine's 1-minute load average when the benchmark started. The machine
(CPU, cores, memory, Python) and the load before and after are in the header: on a shared machine the figures are
taken under that load, and the table says so.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--quick] [--repeat 1] [--output benchmarks/RESULTS.md]
        [--logs DIR] [--list]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "RESULTS.md"
TIMEOUT_SECONDS = 3600
KEPT = " (kept from the previous run)"
ON_MACHINE = "; machine: "  # each benchmark's line names the machine it ran on


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    what: str = ""


BENCHES = [
    Bench("idle", "bench_idle.py", (), ("--seconds", "5", "--skip-demo"), "idle node footprint"),
    Bench("dry_run_startup", "bench_dry_run_startup.py", (), ("--repeat", "2"), "dry run to first payload"),
    Bench("signing", "bench_signing.py", (), ("--number", "200", "--repeat", "3"), "signing and encryption"),
    Bench("comms", "bench_comms.py", (), ("--messages", "3000", "--seconds", "4", "--runs", "2"), "MQTT publish"),
    Bench("netmon", "bench_netmon.py", (), ("--nodes", "100", "--rounds", "2"), "heartbeat decoding, in-process"),
    Bench("fleet", "bench_fleet.py", (), ("--quick",), "supervisor with 1,000 and 5,000 simulated nodes"),
    Bench("observability", "bench_observability.py", (), ("--seconds", "5"), "status page and metrics"),
    Bench("storage", "bench_storage.py", (), ("--images", "60"), "S3 upload"),
    Bench("video_pipeline", "bench_video_pipeline.py", (), ("--repeat", "1", "--frames", "300"), "video decode"),
    Bench("many_cameras", "bench_many_cameras.py", (), ("--counts", "1,8", "--seconds", "3"), "many cameras"),
    Bench("process_pipelines", "bench_process_pipelines.py", (), ("--rounds", "1", "--seconds", "3"), "many cores"),
    Bench("serving_overhead", "bench_serving_overhead.py", (), ("--frames", "60", "--repeat", "1"), "model server"),
    Bench("serving_sharing", "bench_serving_sharing.py", (), ("--pipelines", "1,4", "--seconds", "3"), "sharing"),
    Bench("serving_memory", "bench_serving_memory.py", (), ("--pipelines", "3", "--settle", "2"), "serving memory"),
    Bench("stream_return", "bench_stream_return.py", (), ("--repeat", "2"), "camera back after an outage"),
    Bench("tracking", "bench_tracking.py", (), ("--seconds", "5"), "tracker accuracy and cost"),
    Bench("cascade", "bench_cascade.py", (), ("--frames", "50", "--repeat", "1"), "detector → second model"),
    Bench(
        "ocr_reader",
        "bench_ocr_reader.py",
        ("--streams", "1,4", "--seconds", "30", "--rounds", "3"),
        ("--streams", "1", "--seconds", "10"),
        "OCR reader",
    ),
    Bench("serving_batch", "bench_serving_batch.py", (), ("--rounds", "1", "--images", "4"), "batch size and arena"),
    Bench("providers", "bench_providers.py", (), ("--rounds", "1", "--frames", "3"), "CPU vs OpenVINO provider"),
    Bench("soak", "bench_soak.py", ("--minutes", "10"), ("--minutes", "1", "--pipelines", "1"), "soak (10 min)"),
]


@dataclass
class Outcome:
    bench: Bench
    codes: list[int | None] = field(default_factory=list)  # per run; None: timed out
    seconds: float = 0.0
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    runs: list[list[dict[str, Any]]] = field(default_factory=list)  # one list of recorded rows per run
    tail: str = ""

    def status(self) -> str:
        """``ok``, or what went wrong in the runs."""
        bad = [("timed out" if c is None else f"exit {c}") for c in self.codes if c != 0]
        return ", ".join(bad) if bad else "ok"


def machine() -> str:
    """CPU model, cores, memory and Python, in one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GB RAM"
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPU(s){memory}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"  # fmt: skip


def run_one(bench: Bench, quick: bool, logs: Path) -> tuple[int | None, list[dict[str, Any]], str]:
    """Run one benchmark once: (exit code, recorded rows, last lines of its output); 127 when it is missing."""
    if not (HERE / bench.script).exists():
        return 127, [], f"{bench.script} not found"
    argv = [sys.executable, str(HERE / bench.script), *(bench.quick if quick else bench.args)]
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as handle:
        results = Path(handle.name)
    env = {**os.environ, "EE_BENCH_RESULTS": str(results), "PYTHONUNBUFFERED": "1"}
    log = logs / f"{bench.name}.log"
    code: int | None
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv[1:])}\n".encode())
        out.flush()
        try:
            code = subprocess.run(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT_SECONDS).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    results.unlink(missing_ok=True)
    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-3:])
    return code, rows, tail


def number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_rows(outcome: Outcome) -> list[list[str]]:
    """Markdown rows of one benchmark: its figures, combined over the runs."""
    bench = outcome.bench
    load = f"{outcome.load_start[0]:.1f}"
    if not any(outcome.runs):
        status = outcome.status()
        tail = outcome.tail.replace("|", "/").replace("\n", " ⏎ ")[-160:]
        return [[bench.name, f"no figures recorded ({status}): {tail}", "", "", "", "", "", load]]
    names: list[str] = []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rows in outcome.runs:
        for row in rows:
            if row["name"] not in by_name:
                names.append(row["name"])
            by_name.setdefault(row["name"], []).append(row)
    lines = []
    for name in names:
        rows = by_name[name]
        values = [r["value"] for r in rows if isinstance(r["value"], (int, float))]
        if len(rows) > 1:
            median = statistics.median(values) if values else None
            spread = values
        else:
            median = rows[0]["value"]
            spread = rows[0].get("samples") or []
        low_high = f"{number(min(spread))}–{number(max(spread))}" if len(spread) > 1 else "–"
        baselines = [r["baseline"] for r in rows if isinstance(r.get("baseline"), (int, float))]
        baseline = statistics.median(baselines) if baselines else None
        ratio = f"{median / baseline:.2f}" if baseline and isinstance(median, (int, float)) else "–"
        unit = rows[0]["unit"]
        figure = f"{name}" + (f" ({unit})" if unit else "")
        note = rows[-1].get("note")
        base_text = number(baseline) + (f" ({rows[0]['baseline_name']})" if baseline is not None and
                                         rows[0].get("baseline_name") else "")  # fmt: skip
        lines.append([bench.name, figure + (f"; {note}" if note else ""), rows[0].get("goal") or "–", number(median),
                      low_high, base_text, ratio, load])  # fmt: skip
    return lines


def kept_lines(path: Path, ran: set[str]) -> tuple[list[str], list[str]]:
    """Table rows and per-benchmark lines of an existing table for the benchmarks not run this time."""
    if not path.exists():
        return [], []
    rows, notes = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith(("| benchmark |", "|---")):
            if line.split(" | ")[0][2:] not in ran:
                rows.append(line)
        elif line.startswith("- `") and line[3:].split("`")[0] not in ran:
            if ON_MACHINE not in line:  # written before notes named their machine
                ran_then = not line.endswith(KEPT)  # then it ran on the previous table's machine
                line = line.removesuffix(KEPT) + ON_MACHINE + ((ran_then and previous_machine(path)) or "not recorded")
            notes.append(line if line.endswith(KEPT) else line + KEPT)
    return rows, notes


def previous_machine(path: Path) -> str | None:
    """The machine the previous table at ``path`` was written on (its "Machine:" line)."""
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("- Machine: "):
            return line[len("- Machine: ") :].rstrip(".")
    return None


def write_table(path: Path, outcomes: list[Outcome], args: argparse.Namespace, load_before: Any, started: str) -> None:
    load_after = os.getloadavg()
    ran = {o.bench.name for o in outcomes}
    old_rows, old_notes = kept_lines(path, ran) if args.only and not args.quick else ([], [])
    command = "benchmarks/run_all.py" + (" --quick" if args.quick else "")
    command += f" --repeat {args.repeat}" if args.repeat > 1 else ""
    command += "".join(f" --only {n}" for n in args.only or [])
    lines = [
        "# Benchmark results",
        "",
        f"Written by `.venv/bin/python {command}` on {started} (UTC); the README and docs quote this file.",
        "",
        f"- Machine: {machine()}.",
        f"- Load average (1, 5, 15 min) before: {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}; "
        f"after: {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f} "
        f"({os.cpu_count()} CPU(s)). **Figures are taken under this load**: on a shared machine, times and CPU "
        "shares are inflated and spread wide; the load column is the 1-minute average when each benchmark started.",
        "- Median: over the runs with `--repeat N` (N > 1), else the benchmark's own median (or single value). "
        "Min–max: over those runs, or over the samples the benchmark took. Ratio: median / baseline.",
    ]
    if args.quick:
        lines.append("- `--quick`: shortened runs (a smoke test of the table); do not quote these figures.")
    if old_rows:
        lines.append(f"- Rows of benchmarks other than {', '.join(sorted(ran))} are kept from the previous table "
                     "(their load column is that run's; the list at the end names each one's machine).")  # fmt: skip
    lines += ["", "| benchmark | figure | goal | median | min–max | baseline | ratio | load |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    by_bench: dict[str, list[str]] = {}
    for line in old_rows:
        by_bench.setdefault(line.split(" | ")[0][2:], []).append(line)
    for outcome in outcomes:
        by_bench[outcome.bench.name] = [
            "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table_rows(outcome)
        ]
    order = [b.name for b in BENCHES]
    for name in sorted(by_bench, key=lambda n: order.index(n) if n in order else len(order)):
        lines += by_bench[name]
    lines += ["", "Per benchmark: arguments and wall time.", ""]
    for outcome in outcomes:
        bench = outcome.bench
        argv = " ".join(bench.quick if args.quick else bench.args) or "(defaults)"
        status = outcome.status()
        lines.append(f"- `{bench.name}` ({bench.what}): `{bench.script} {argv}`, {len(outcome.runs)} run(s), "
                     f"{outcome.seconds:.0f} s, {status}{ON_MACHINE}{machine()}")  # fmt: skip
    lines += old_notes
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--quick", action="store_true", help="shortened runs (smoke test; not for quoting)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each benchmark (median and min–max over them)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the table (benchmarks/RESULTS.md)")
    parser.add_argument("--logs", type=Path, help="keep each benchmark's output here (default: a temporary folder)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for bench in BENCHES:
            print(f"{bench.name:<18} {bench.script:<28} {bench.what}")
        return 0
    known = {b.name for b in BENCHES}
    unknown = [n for n in args.only or [] if n not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    selected = [b for b in BENCHES if not args.only or b.name in args.only]
    logs = args.logs or Path(tempfile.mkdtemp(prefix="bench_logs_"))
    logs.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    outcomes = []
    for bench in selected:
        outcome = Outcome(bench, load_start=os.getloadavg())
        began = time.monotonic()
        for _ in range(max(1, args.repeat)):
            code, rows, outcome.tail = run_one(bench, args.quick, logs)
            outcome.codes.append(code)
            if rows:
                outcome.runs.append(rows)
        outcome.seconds = time.monotonic() - began
        outcomes.append(outcome)
        print(f"{bench.name}: {sum(len(r) for r in outcome.runs)} figure(s), {outcome.seconds:.0f} s, "
              f"{outcome.status()}; log {logs / (bench.name + '.log')}", flush=True)  # fmt: skip
        write_table(args.output, outcomes, args, load_before, started)  # after each: a partial table survives
    print(f"wrote {args.output}")
    return 0 if all(code == 0 for o in outcomes for code in o.codes) else 1


if __name__ == "__main__":
    sys.exit(main())
