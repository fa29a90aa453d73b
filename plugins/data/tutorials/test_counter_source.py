"""Tests of the tutorial capture plugin with the engine's ``plugin_harness`` fixture (docs/testing-plugins.md)."""


def test_counts_from_start_and_ends_at_the_limit(plugin_harness):
    result = plugin_harness.run_capture("TUTORIAL_COUNTER", config={"RATE": 1000, "LIMIT": 3, "START": 5})
    assert result.data == [{"count": 5}, {"count": 6}, {"count": 7}]
    assert result.finished


def test_endless_counter_stops_at_max_inputs(plugin_harness):
    result = plugin_harness.run_capture("TUTORIAL_COUNTER", config={"RATE": 1000}, max_inputs=4)
    assert [inp.seq for inp in result.inputs] == [1, 2, 3, 4]
    assert not result.finished
