"""``edge-client`` reads its broker defaults from ``EE_*`` through the node's settings schema: a bad value is one
clear line and exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from edge_engine.remote.command_line import main


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("EE_MQTT_PORT", "abc", "expected a whole number"),
        ("EE_MQTT_PORT", "70000", "expected a whole number from 1 to 65535"),
    ],
)
def test_a_bad_broker_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(["nodes"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edge-client: environment › key '{name}': {problem} (got '{value}'); default: 1883"]


def test_the_broker_settings_become_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_engine.remote.command_line import _parser

    monkeypatch.setenv("EE_MQTT_PORT", "18830")
    monkeypatch.setenv("EE_MQTT_HOST", "broker.example")
    monkeypatch.setenv("EE_ROOT_TOPIC", "fleet")
    args = _parser().parse_args(["nodes"])
    assert (args.host, args.port, args.root_topic) == ("broker.example", 18830, "fleet")
