"""Rejected commands on a real Mosquitto: the log is rate-limited like the notifications (a summary line gives the
count of lines held back) and ``comms.commands.reasons`` counts by kind, not by the sender or seconds quoted."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

import pytest
from conftest import wait_for
from test_comms import allow, raw, start_node, tick_pipeline

from edge_engine.comms.commands import REJECTIONS_PER_SECOND
from edge_engine.remote.node_client import EdgeClient

pytestmark = pytest.mark.timeout(60)
COMMANDS_LOGGER = "edge_engine.comms.commands"


def _unsigned(address: str, i: int) -> bytes:
    return raw({"ACTION": "UPDATE_CONFIG", "PAYLOAD": tick_pipeline(f"u{i}"), "EE_SENDER": address,
                "TIME": datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")})  # fmt: skip


def test_101_unsigned_commands_log_at_most_the_rate_and_one_summary(
    mosquitto, node_factory, me, clients, caplog: pytest.LogCaptureFixture
) -> None:
    node = start_node(node_factory, mosquitto)
    client: EdgeClient = clients(me, mosquitto.port)
    address = node.identity.address
    stats = node.comms.commands.stats
    caplog.set_level(logging.WARNING, logger=COMMANDS_LOGGER)
    for i in range(101):
        client.publish(address, _unsigned(me.address, i))
    wait_for(lambda: stats.received >= 101, timeout=20)

    def summaries() -> list[str]:
        return [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]

    wait_for(lambda: sum(_held(s) for s in summaries()) == stats.rejections_not_logged > 0, timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == COMMANDS_LOGGER and "rejected:" in r.getMessage()]
    windows = len(summaries())  # a burst slower than a second spans windows: each logs up to the rate
    assert 1 <= len(lines) <= REJECTIONS_PER_SECOND * (windows + 1), len(lines)
    assert len(lines) + stats.rejections_not_logged == 101
    assert all("bad_signature" in s for s in summaries()), summaries()
    assert stats.rejected == 101 and stats.reasons == {"bad_signature": 101}, stats.reasons


def _held(summary: str) -> int:
    match = re.search(r": (\d+) more rejection", summary)
    return int(match.group(1)) if match else 0


def test_reasons_group_by_kind_whatever_sender_or_seconds(mosquitto, node_factory, me, stranger, clients) -> None:
    node = start_node(node_factory, mosquitto)
    allow(node, me)
    owner: EdgeClient = clients(me, mosquitto.port)
    intruder: EdgeClient = clients(stranger, mosquitto.port)
    address = node.identity.address
    for hours in (25, 26, 30):  # three different "off by N s"
        sent_at = datetime.now() - timedelta(hours=hours)
        owner.publish(address, raw(owner.build_command(address, "UPDATE_CONFIG", tick_pipeline(), sent_at=sent_at)))
    for i in range(2):
        intruder.publish(address, raw(intruder.build_command(address, "UPDATE_CONFIG", tick_pipeline(f"s{i}"))))
    stats = node.comms.commands.stats
    wait_for(lambda: stats.received >= 5, timeout=10)
    assert stats.reasons == {"outside_time_window": 3, "not_allowed": 2}, stats.reasons
    wait_for(lambda: node.snapshot()["comms"]["commands"]["reasons"] == stats.reasons, timeout=5)
