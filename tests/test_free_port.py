"""The tests' port picker: a server that asks for several ports at once gets distinct ones."""

import pytest
from mqtt_broker import free_port


def test_no_port_is_handed_out_twice_in_one_process() -> None:
    # 3,000 draws from the ~22,000 ports below the ephemeral range: without the bookkeeping, equal draws are
    # near certain (the birthday bound), which is how SeaweedFS once got its master's port as its volume's gRPC port.
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
    assert 1883 not in ports


def test_two_xdist_workers_never_draw_the_same_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # each worker's bookkeeping knows only its own draws: two workers (`pytest -n 2`) must draw from disjoint ranges
    drawn: dict[str, set[int]] = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        drawn[worker] = {free_port() for _ in range(500)}
    assert drawn["gw0"] and drawn["gw1"]
    assert max(drawn["gw0"]) < min(drawn["gw1"]), "the workers' ranges overlap"
