"""``get_node_history --plot``: the real command writes SVG charts of local_history.json (and the Grafana example)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_ops_cmds import REPO, run

from edge_engine.cli.history_plot import render_svg
from edge_engine.node.history import NodeHistory

NS = {"svg": "http://www.w3.org/2000/svg"}
START = datetime(2026, 11, 23, 15, 0, 0, tzinfo=timezone.utc)
TITLES = ("CPU (%)", "Memory (GB)", "Disk (local cache volume) (GB)", "Node process RSS (with children) (MB)")


def _stamp(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _history(samples: int = 12) -> dict:
    """12 samples 10 s apart; cpu has a gap at index 5; 'late' exists only from index 6; 'gate' everywhere."""
    return {
        "alias": "lab-node",
        "timestamps": [_stamp(10 * i) for i in range(samples)],
        "cpu_load": [None if i == 5 else float(i) for i in range(samples)],
        "total_memory": [16.0] * samples,
        "occupied_memory": [4.0 + i / 10 for i in range(samples)],
        "disk_total": [500 * 1024**3] * samples,
        "disk_used": [200 * 1024**3 + i for i in range(samples)],
        "process_rss": [90 * 1024**2] * samples,
        "pipelines": {
            "gate": [25.0] * samples,
            "late": [None] * 6 + [12.0] * (samples - 6),
        },
        "coarse": {
            "timestamps": [_stamp(-300 * k) for k in (3, 2, 1)],
            "cpu_load": [1.0, 2.0, 3.0],
            "pipelines": {"gate": [1.0, 2.0, 3.0]},
        },
    }


def _cache(tmp_path: Path, history: dict | str) -> Path:
    root = tmp_path / "_local_cache"
    (root / "_data").mkdir(parents=True)
    text = history if isinstance(history, str) else json.dumps(history, separators=(",", ":"))
    (root / "_data" / "local_history.json").write_text(text)
    return root


def _plot(tmp_path: Path, cache: Path, *extra: str, name: str = "history.svg") -> tuple[ET.Element, str]:
    target = tmp_path / name
    result = run(["get_node_history", "--cache-dir", str(cache), "--plot", str(target), *extra])
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
    text = target.read_text(encoding="utf-8")
    return ET.fromstring(text), text


def _series(root: ET.Element) -> dict[str, list[tuple[str, int, int]]]:
    """{panel title: [(series name, data-points, points in d)]}."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    for panel in root.iter(f"{{{NS['svg']}}}g"):
        if "panel" not in (panel.get("class") or "").split():
            continue
        rows = out.setdefault(panel.get("data-title", ""), [])
        for path in panel.iter(f"{{{NS['svg']}}}path"):
            d = path.get("d", "")
            rows.append((path.get("data-series", ""), int(path.get("data-points", "-1")), len(re.findall(r"[ML]", d))))
    return out


def _legend(root: ET.Element) -> list[str]:
    return [
        "".join(text.itertext())
        for group in root.iter(f"{{{NS['svg']}}}g")
        if group.get("class") == "legend"
        for text in group.iter(f"{{{NS['svg']}}}text")
    ]


def test_plot_writes_an_svg_with_a_path_per_series(tmp_path: Path) -> None:
    root, text = _plot(tmp_path, _cache(tmp_path, _history()))
    assert root.tag == f"{{{NS['svg']}}}svg"
    assert "lab-node" in root.findtext("svg:title", namespaces=NS, default="")
    series = _series(root)
    for title in (*TITLES, "Pipeline input rate (inputs/s)"):
        assert title in series and title in text
    assert series["CPU (%)"] == [("cpu_load", 11, 11)]  # one gap
    assert series["Memory (GB)"] == [("occupied", 12, 12), ("total", 12, 12)]
    assert series["Disk (local cache volume) (GB)"] == [("used", 12, 12), ("total", 12, 12)]
    assert series["Node process RSS (with children) (MB)"] == [("process_rss", 12, 12)]
    assert series["Pipeline input rate (inputs/s)"] == [("gate", 12, 12), ("late", 6, 6)]
    cpu = next(p for p in root.iter(f"{{{NS['svg']}}}path") if p.get("data-series") == "cpu_load")
    assert cpu.get("d", "").count("M") == 2  # the None breaks the line
    legend = _legend(root)
    assert "gate" in legend and "late" in legend
    assert "15:00" in text and "UTC" in text  # time labels


def test_plot_coarse_charts_the_day(tmp_path: Path) -> None:
    root, text = _plot(tmp_path, _cache(tmp_path, _history()), "--coarse")
    series = _series(root)
    assert series["CPU (%)"] == [("cpu_load", 3, 3)]
    assert series["Pipeline input rate (inputs/s)"] == [("gate", 3, 3)]
    assert "last day" in text


def test_plot_keeps_the_last_hour(tmp_path: Path) -> None:
    history = _history(12)
    history["timestamps"] = [_stamp(-7200), *history["timestamps"][1:]]  # two hours before the others
    root, _ = _plot(tmp_path, _cache(tmp_path, history))
    assert _series(root)["Memory (GB)"][0][1] == 11


def test_plot_of_an_empty_history_says_no_samples_yet(tmp_path: Path) -> None:
    root, text = _plot(tmp_path, _cache(tmp_path, {"alias": "lab-node", "timestamps": [], "pipelines": {}}))
    assert "no samples yet" in text
    assert not list(root.iter(f"{{{NS['svg']}}}path"))


def test_plot_of_a_history_written_by_node_history(tmp_path: Path) -> None:
    clock = [START.timestamp()]
    probe_values = iter(range(1000))

    def probe() -> dict[str, float | int | None]:
        k = next(probe_values)
        return {
            "cpu_load": float(k),
            "total_memory": 8.0,
            "occupied_memory": 2.0,
            "disk_total": 10 * 1024**3,
            "disk_used": 5 * 1024**3,
            "process_rss": None if k == 3 else 80 * 1024**2,
        }

    history = NodeHistory({"alias": "probe-node"}, tmp_path, lambda: clock[0], probe=probe)
    for i in range(40):  # 400 s: 40 samples, one completed 5-minute bucket
        history.sample({"cam-a": 10.0, **({"cam-b": 3.0} if i >= 20 else {})})
        clock[0] += 10
    cache = _cache(tmp_path, "{}")
    history.save(cache / "_data" / "local_history.json")
    root, _ = _plot(tmp_path, cache)
    series = _series(root)
    assert series["CPU (%)"] == [("cpu_load", 40, 40)]
    assert series["Node process RSS (with children) (MB)"] == [("process_rss", 39, 39)]
    assert series["Pipeline input rate (inputs/s)"] == [("cam-a", 40, 40), ("cam-b", 20, 20)]
    assert {"cam-a", "cam-b"} <= set(_legend(root))
    coarse = _series(_plot(tmp_path, cache, "--coarse", name="coarse.svg")[0])
    assert coarse["CPU (%)"][0][1] == history.coarse_len >= 1


@pytest.mark.parametrize("name", ["history.png", "history.pdf", "history"])
def test_plot_refuses_other_formats(tmp_path: Path, name: str) -> None:
    cache = _cache(tmp_path, _history())
    result = run(["get_node_history", "--cache-dir", str(cache), "--plot", str(tmp_path / name)])
    assert result.returncode == 1
    assert "SVG only" in result.stderr
    assert not (tmp_path / name).exists()


def test_plot_of_a_missing_or_corrupt_history_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "empty_cache"
    missing.mkdir()
    result = run(["get_node_history", "--cache-dir", str(missing), "--plot", str(tmp_path / "a.svg")])
    assert result.returncode == 1 and "local_history.json" in result.stderr
    corrupt = _cache(tmp_path, "{not json")
    result = run(["get_node_history", "--cache-dir", str(corrupt), "--plot", str(tmp_path / "b.svg")])
    assert result.returncode == 1 and "get_node_history: error:" in result.stderr
    (corrupt / "_data" / "local_history.json").write_text(json.dumps({"timestamps": "oops"}))
    result = run(["get_node_history", "--cache-dir", str(corrupt), "--plot", str(tmp_path / "c.svg")])
    assert result.returncode == 1 and "timestamps" in result.stderr
    assert not list(tmp_path.glob("*.svg"))


def test_help_mentions_plot() -> None:
    result = run(["get_node_history", "--help"])
    assert result.returncode == 0
    assert "--plot" in result.stdout and "SVG only" in result.stdout


def test_render_svg_without_pipelines_or_values() -> None:
    history = {"timestamps": [_stamp(0), _stamp(10)], "cpu_load": [None, None], "pipelines": {}}
    text = render_svg(history)
    ET.fromstring(text)
    assert "no pipelines" in text and "no data" in text


def test_grafana_dashboard_uses_the_node_metrics() -> None:
    """Every metric a panel queries is one the node exports (a counter family gets ``_total`` on the wire)."""
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exported = set(re.findall(r'"(edge_[a-z0-9_]+)"', (REPO / "edge_engine/observe/metrics.py").read_text()))
    panels = dashboard["panels"]
    assert panels
    names = set()
    for panel in panels:
        for target in panel.get("targets", []):
            used = set(re.findall(r"\b(edge_[a-z0-9_]+)", target["expr"]))
            assert used, target["expr"]
            unknown = {n for n in used if n not in exported and n.removesuffix("_total") not in exported}
            assert not unknown, f"panel {panel['title']!r} queries metrics the node does not export: {unknown}"
            names |= used
    assert {"edge_inputs_total", "edge_errors_total", "edge_process_rss_bytes", "edge_flapping"} <= names
