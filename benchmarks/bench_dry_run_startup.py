"""Dry-run start-up: time from launching ``cmds/dry_run`` to its first payload line on stdout.

Each run starts a fresh Python process (interpreter start, engine import, plugin discovery, pipeline
start included) running ``TUTORIAL_HELLO`` with ``EVERY: 1`` on synthetic frames, a pipeline without a model,
and reads stdout until the first ``{"type": "payload", ...}`` line. The budget is 1 s (issue 9); the median
of ``--repeat`` runs is reported next to the in-command figure the summary line gives (``first_payload_s``,
from the command's entry, interpreter start excluded).

    .venv/bin/python benchmarks/bench_dry_run_startup.py [--repeat 5] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import record

REPO = Path(__file__).resolve().parent.parent
BUDGET_S = 1.0


def one_run() -> tuple[float, float]:
    """(seconds from launch to the first payload line, the command's own first_payload_s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE_")} | {"EE_LOAD_ENTRY_POINTS": "0"}
    command = [sys.executable, str(REPO / "cmds" / "dry_run"), "--plugin", "TUTORIAL_HELLO",
               "--config", '{"EVERY": 1}', "--inputs", "5", "--quiet"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    rest, _ = proc.communicate(timeout=60)
    if proc.returncode != 0 or json.loads(first).get("type") != "payload":
        raise SystemExit(f"dry run failed (exit {proc.returncode}): {first}{rest}")
    return elapsed, float(json.loads(rest.splitlines()[-1])["first_payload_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (after one untimed warm-up)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the median misses the budget")
    args = parser.parse_args()
    one_run()  # warm-up: file system cache, bytecode
    runs = [one_run() for _ in range(args.repeat)]
    launch = statistics.median(r[0] for r in runs)
    inside = statistics.median(r[1] for r in runs)
    print(f"python {sys.version.split()[0]}, {args.repeat} run(s), TUTORIAL_HELLO on SYNTHETIC (no model)")
    print(f"launch → first payload: median {launch:.3f} s  (runs: {', '.join(f'{r[0]:.3f}' for r in runs)})")
    print(f"command entry → first payload: median {inside:.3f} s")
    record("dry run: launch → first payload", round(launch, 3), "s", goal=f"≤ {BUDGET_S:g}",
           samples=[round(r[0], 3) for r in runs])  # fmt: skip
    record("dry run: command entry → first payload", round(inside, 3), "s", samples=[round(r[1], 3) for r in runs])
    ok = launch <= BUDGET_S
    print(f"budget ≤ {BUDGET_S:g} s: {'OK' if ok else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
