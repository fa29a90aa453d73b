"""The tests' port picker: a server that asks for several ports at once gets distinct ones."""

from mqtt_broker import free_port


def test_no_port_is_handed_out_twice_in_one_process() -> None:
    # 3,000 draws from the ~22,000 ports below the ephemeral range: without the bookkeeping, equal draws are
    # near certain (the birthday bound), which is how SeaweedFS once got its master's port as its volume's gRPC port.
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
    assert 1883 not in ports
