"""NodeHistory: bounded rolling lists, 5-minute means, Ratio1 field names, save/load across a restart."""

from __future__ import annotations

import json
import logging
import time

from edge_engine.node.history import NodeHistory, iso_utc, parse_iso_utc

IDENTITY = {"address": "0xai_test", "eth_address": "0xabc", "alias": "node-test", "version": "v0.1.0"}
T0 = 1_795_000_000.0 - (1_795_000_000.0 % 300)  # a bucket boundary


class FakeClock:
    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProbe:
    """Returns cpu_load = a counter, so bucket means are known."""

    def __init__(self):
        self.cpu = 0.0

    def __call__(self) -> dict:
        return {
            "cpu_load": self.cpu,
            "total_memory": 16.0,
            "occupied_memory": 4.0,
            "disk_total": 1000,
            "disk_used": 100,
            "process_rss": 2000,
        }


def _history(clock: FakeClock, probe: FakeProbe | None = None) -> NodeHistory:
    return NodeHistory(IDENTITY, cache_dir=".", clock=clock, probe=probe or FakeProbe())


def test_sizes_stay_bounded_over_two_days(tmp_path) -> None:
    clock = FakeClock()
    history = _history(clock)
    for _ in range(2 * 24 * 360):  # two days at 10 s
        history.sample({"demo": 25.0})
        clock.advance(10)
    assert len(history) == 360
    assert history.coarse_len == 288
    data = history.to_json()
    assert len(data["timestamps"]) == len(data["cpu_load"]) == len(data["pipelines"]["demo"]) == 360
    assert len(data["coarse"]["timestamps"]) == len(data["coarse"]["cpu_load"]) == 288
    fine = [parse_iso_utc(t) for t in data["timestamps"]]
    assert fine[-1] - fine[0] <= 3600
    assert fine == sorted(fine)


def test_a_pause_prunes_by_age(tmp_path) -> None:
    clock = FakeClock()
    history = _history(clock)
    for _ in range(10):
        history.sample({})
        clock.advance(10)
    clock.advance(7200)
    history.sample({})
    assert len(history) == 1


def test_coarse_points_are_means_of_their_5_minute_bucket() -> None:
    clock, probe = FakeClock(), FakeProbe()
    history = _history(clock, probe)
    for i in range(30 * 3 + 1):  # three full buckets, then one sample opening the fourth
        probe.cpu = float(i)
        history.sample({"a": 2.0 if i < 30 else 4.0, **({"b": 10.0} if 30 <= i < 45 else {})})
        clock.advance(10)
    coarse = history.to_json()["coarse"]
    assert coarse["cpu_load"] == [14.5, 44.5, 74.5]
    assert coarse["timestamps"] == [iso_utc(T0), iso_utc(T0 + 300), iso_utc(T0 + 600)]
    assert coarse["pipelines"]["a"] == [2.0, 4.0, 4.0]
    assert coarse["pipelines"]["b"] == [None, 10.0, None]
    assert coarse["disk_used"] == [100, 100, 100]
    assert coarse["total_memory"] == [16.0, 16.0, 16.0]


def test_pipelines_align_with_timestamps() -> None:
    clock = FakeClock()
    history = _history(clock)
    history.sample({"old": 1.0})
    clock.advance(10)
    history.sample({"old": 2.0, "new": 5.0})
    clock.advance(10)
    history.sample({"new": 6.0})
    pipelines = history.to_json()["pipelines"]
    assert pipelines == {"old": [1.0, 2.0, None], "new": [None, 5.0, 6.0]}


def test_sample_returns_the_sample() -> None:
    clock = FakeClock()
    sample = _history(clock).sample({"demo": 12.345})
    assert sample["timestamp"] == iso_utc(T0)
    assert sample["pipelines"] == {"demo": 12.35}
    assert sample["cpu_load"] == 0.0 and sample["process_rss"] == 2000


def test_ratio1_field_names_and_our_own(tmp_path) -> None:
    clock = FakeClock()
    history = _history(clock)
    history.sample({"demo": 1.0})
    clock.advance(125)
    path = tmp_path / "_data" / "local_history.json"
    history.save(path)
    text = path.read_text()
    assert "\n" not in text.strip()  # compact, as Ratio1 writes it
    data = json.loads(text)
    for key in ("address", "eth_address", "alias", "uptime", "version", "last_save_time"):
        assert key in data, key
    for key in ("cpu_load", "total_memory", "occupied_memory", "timestamps"):
        assert isinstance(data[key], list), key
    for key in ("disk_total", "disk_used", "process_rss"):
        assert isinstance(data[key], list), key
    assert isinstance(data["pipelines"], dict) and isinstance(data["coarse"], dict)
    assert data["uptime"] == "0:02:05"
    assert data["address"] == "0xai_test"
    assert data["last_save_time"].endswith("Z") and data["timestamps"][0] == iso_utc(T0)


def test_save_and_load_roundtrip(tmp_path) -> None:
    clock, probe = FakeClock(), FakeProbe()
    history = _history(clock, probe)
    for i in range(100):
        probe.cpu = float(i % 7)
        history.sample({"demo": float(i), **({"late": 1.5} if i > 90 else {})})
        clock.advance(10)
    path = tmp_path / "local_history.json"
    history.save(path)
    before = json.loads(path.read_text())

    restarted = _history(clock)
    assert restarted.load(path) is True
    after = restarted.to_json()
    for key in ("timestamps", "cpu_load", "total_memory", "occupied_memory", "disk_used", "pipelines", "coarse"):
        assert after[key] == before[key], key
    restarted.sample({"demo": 1.0})  # continues after the loaded samples
    assert len(restarted) == len(history) + 1


def test_load_ignores_an_unreadable_file(tmp_path, caplog) -> None:
    path = tmp_path / "local_history.json"
    path.write_text("{not json")
    history = _history(FakeClock())
    with caplog.at_level(logging.WARNING, logger="edge_engine.node.history"):
        assert history.load(path) is False
    assert str(path) in caplog.text
    path.write_text(json.dumps({"timestamps": ["yesterday"], "cpu_load": [1]}))
    assert history.load(path) is False
    assert history.load(tmp_path / "missing.json") is False
    assert len(history) == 0


def test_load_drops_samples_older_than_the_window(tmp_path) -> None:
    clock = FakeClock()
    history = _history(clock)
    for _ in range(20):
        history.sample({})
        clock.advance(10)
    path = tmp_path / "local_history.json"
    history.save(path)
    clock.advance(3 * 3600)  # node down for three hours
    restarted = _history(clock)
    restarted.load(path)
    assert len(restarted) == 0


def test_real_probe_samples(tmp_path) -> None:
    count = 50
    history = NodeHistory(IDENTITY, cache_dir=tmp_path)
    started = time.perf_counter()
    for _ in range(count):
        sample = history.sample({"demo": 1.0})
    elapsed_ms = (time.perf_counter() - started) * 1000 / count
    print(f"one sample: {elapsed_ms:.3f} ms")  # informative only (budget: < 2 ms)
    assert 0.0 <= sample["cpu_load"] <= 100.0
    assert sample["total_memory"] > 0 and 0 <= sample["occupied_memory"] <= sample["total_memory"]
    assert sample["disk_total"] > 0 and sample["disk_used"] > 0
    assert sample["process_rss"] > 10 * 1024 * 1024
    assert len(history) <= 360
