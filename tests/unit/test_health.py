"""scheduler.health.node_status: ready, suspect, down, unknown from probe times."""
import pytest

from model import READY, SUSPECT, DOWN, UNKNOWN
from scheduler.health import node_status, OVERDUE

DOWN_AFTER, INTERVAL = 5.0, 1.0


@pytest.mark.parametrize("last_ok, last_failed, watched_since, now, expected", [
    # never answered yet
    (None, False, 100.0, 100.0, UNKNOWN),
    (None, True, 100.0, 104.9, UNKNOWN),          # a failed first probe: still waiting
    (None, False, 100.0, 105.0, DOWN),            # down_after without any answer
    (None, True, 100.0, 130.0, DOWN),
    # answered recently
    (100.0, False, 0.0, 100.0, READY),
    (100.0, False, 0.0, 100.0 + OVERDUE * INTERVAL, READY),   # exactly at the overdue limit
    # missed probes
    (100.0, True, 0.0, 100.5, SUSPECT),           # the last probe failed
    (100.0, False, 0.0, 100.0 + OVERDUE * INTERVAL + 0.1, SUSPECT),  # overdue, no answer yet
    (100.0, True, 0.0, 104.9, SUSPECT),
    # silent for down_after
    (100.0, False, 0.0, 105.0, DOWN),
    (100.0, True, 0.0, 105.0, DOWN),
    (100.0, True, 0.0, 500.0, DOWN),
])
def test_node_status(last_ok, last_failed, watched_since, now, expected):
    assert node_status(last_ok, last_failed, watched_since, now, DOWN_AFTER, INTERVAL) == expected


def test_overdue_scales_with_probe_interval():
    # 4 s of silence is overdue at a 1 s interval but not at a 2 s interval.
    assert node_status(0.0, False, 0.0, 4.0, 10.0, 1.0) == SUSPECT
    assert node_status(0.0, False, 0.0, 4.0, 10.0, 2.0) == READY


def test_down_after_wins_over_suspect():
    assert node_status(0.0, True, 0.0, 2.0, 2.0, 1.0) == DOWN


def test_an_answer_after_down_makes_the_node_ready_again():
    assert node_status(10.0, False, 0.0, 9.0 + 1.0, DOWN_AFTER, INTERVAL) == READY
