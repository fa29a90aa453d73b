#!/usr/bin/env python3
"""Measure the container figures docs/deployment.md quotes, as medians over a few rounds.

    docker/measure.py                          # 3 rounds with edge-node:mainnet
    docker/measure.py --rounds 5 --image edge-node:devnet

Each round starts a container on a fresh volume with the demo pipeline on, joined to a Mosquitto broker on the
host's loopback (``--network host``, a free port; the host's ``mosquitto`` binary), and measures:

- cold start: the container's start (``State.StartedAt``) → its first heartbeat received by ``edge-client watch``;
- healthy: the container's start → ``docker inspect`` says ``healthy`` (the first HEALTHCHECK runs at 5 s);
- stop: ``docker stop`` with the demo pipeline running → exited (limit 5 s), and its exit code.

Prints one line per round, then the medians and the machine's load (``uptime``). Removes its containers and
volumes. Needs a Docker daemon, ``mosquitto`` and the repository's ``.venv`` (for ``edge-client``).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLIENT = REPO / ".venv" / "bin" / "edge-client"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def started_at(container: str) -> float:
    text = docker("inspect", "-f", "{{.State.StartedAt}}", container)
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def first_heartbeat(watch_file: Path, alias: str) -> float | None:
    for line in watch_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if (record.get("message") or {}).get("EE_ID") == alias:
            return float(record["received_at"])
    return None


def demo_frames(container: str) -> int:
    info = json.loads(docker("exec", container, "get_node_info"))
    return sum(int(p["capture"]["inputs"]) for p in info.get("pipelines") or [])


def one_round(image: str, port: int, watch_file: Path, index: int, tag: str) -> dict[str, float]:
    name, volume, alias = f"{tag}-{index}", f"{tag}-{index}", f"measure-{index}"
    docker("volume", "create", volume)
    try:
        docker("run", "-d", "--name", name, "--network", "host", "--shm-size", "1g", "-e", "EE_DEMO=1",
               "-e", f"EE_ID={alias}", "-e", "EE_MQTT_HOST=127.0.0.1", "-e", f"EE_MQTT_PORT={port}",
               "-e", "EE_METRICS_PORT=0", "-e", "EE_STATUS_PORT=0",
               "-v", f"{volume}:/edge_node/_local_cache", image)  # fmt: skip
        start = started_at(name)
        heartbeat = wait(lambda: first_heartbeat(watch_file, alias), 120, f"a heartbeat from {alias}")
        wait(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", name) == "healthy", 120, "healthy")
        healthy = time.time() - start
        wait(lambda: demo_frames(name) > 0, 60, "the demo pipeline's first frames")
        t0 = time.monotonic()
        docker("stop", name)
        stop = time.monotonic() - t0
        code = int(docker("inspect", "-f", "{{.State.ExitCode}}", name))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
    return {"cold_start": heartbeat - start, "healthy": healthy, "stop": stop, "exit_code": code}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="edge-node:mainnet")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    tag = f"edge-measure-{port}"
    broker = subprocess.Popen(["mosquitto", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as work:
        watch_file = Path(work) / "heartbeats.jsonl"
        key = Path(work) / "client.pem"
        time.sleep(0.5)
        with open(watch_file, "w", encoding="utf-8") as out:
            watch = subprocess.Popen([str(CLIENT), "--key", str(key), "--port", str(port), "watch", "--heartbeats"],
                                     stdout=out, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(1.0)
            rounds = []
            for index in range(1, args.rounds + 1):
                result = one_round(args.image, port, watch_file, index, tag)
                rounds.append(result)
                line = f"round {index}: cold start {result['cold_start']:.2f} s, healthy {result['healthy']:.1f} s, "
                line += f"docker stop {result['stop']:.2f} s (exit code {result['exit_code']:.0f})"
                print(line, flush=True)
        finally:
            watch.terminate()
            broker.terminate()
    size = int(docker("image", "inspect", "-f", "{{.Size}}", args.image)) / 1e6
    print(
        f"median of {len(rounds)}: cold start {statistics.median(r['cold_start'] for r in rounds):.2f} s, "
        f"healthy {statistics.median(r['healthy'] for r in rounds):.1f} s, "
        f"docker stop {statistics.median(r['stop'] for r in rounds):.2f} s; image {args.image} {size:.0f} MB"
    )
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0 if all(r["exit_code"] == 0 and r["stop"] <= 5.0 for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
