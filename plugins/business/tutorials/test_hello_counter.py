"""Tests of the tutorial business plugin, written as a plugin author writes them (docs/testing-plugins.md).

The ``plugin_harness`` fixture comes with the engine (``edge_engine.testing``): it runs the plugin in a
real pipeline on the inputs given and returns what it emitted. Files named ``test_*.py`` under
``plugins/`` are skipped by the node and collected by pytest.
"""

import numpy as np


def test_says_hello_every_n_inputs(plugin_harness):
    frame = np.full((8, 8, 3), 100, np.uint8)
    result = plugin_harness.run("TUTORIAL_HELLO", config={"EVERY": 2}, inputs=[frame] * 4)
    assert [p["SEEN"] for p in result.payloads] == [2, 4]
    assert result.payloads[0]["MEAN_BRIGHTNESS"] == 100.0
    assert result.payloads[1].input_seq == 4


def test_structured_inputs_have_no_brightness(plugin_harness):
    result = plugin_harness.run("TUTORIAL_HELLO", config={"EVERY": 1, "MESSAGE": "hi"}, inputs=[{"n": 1}])
    assert result.data == [{"MESSAGE": "hi", "SEEN": 1}]


def test_live_update_and_reset_command(plugin_harness):
    with plugin_harness.start("TUTORIAL_HELLO", config={"EVERY": 3}) as session:
        assert session.feed([{"n": i} for i in range(3)])[0]["SEEN"] == 3
        session.update_config(EVERY=1)
        assert [p["SEEN"] for p in session.feed({"n": 3})] == [4]
        assert session.command("RESET") == {"reset": True}
        assert session.feed({"n": 4})[0]["SEEN"] == 1
