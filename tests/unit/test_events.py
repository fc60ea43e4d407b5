"""master.events: the event log. Any thread records; the store gets what was
recorded, in order and in one write, only when the log is flushed."""
import threading

from master.events import EventLog, iso
from store.state import Store

WALL = 1_700_000_000.25


def test_events_reach_the_store_in_order_when_flushed():
    store = Store(None)
    log = EventLog(store, wall=lambda: WALL)
    log.record("placed", "web.1.abc on node1 (missing)", service="web", node="node1")
    log.record("node", "node node2 ready -> down", node="node2")
    assert store.events() == []
    log.flush()
    assert [(e["kind"], e["message"], e["time"], e.get("service"), e.get("node")) for e in store.events()] == [
        ("placed", "web.1.abc on node1 (missing)", iso(WALL), "web", "node1"),
        ("node", "node node2 ready -> down", iso(WALL), None, "node2")]
    log.flush()                        # nothing new: nothing written twice
    assert len(store.events()) == 2


def test_recording_never_waits_for_the_store():
    """An event recorded while the store's lock is held (a write in progress)
    is taken at once; it reaches the store with the next flush."""
    store = Store(None)
    log = EventLog(store, wall=lambda: WALL)
    recorded = threading.Event()
    with store.lock:
        threading.Thread(target=lambda: (log.record("error", "late"), recorded.set()), daemon=True).start()
        assert recorded.wait(20)
    log.flush()
    assert [e["message"] for e in store.events()] == ["late"]


def test_iso_is_the_wall_clock_format_bicycle_writes():
    assert iso(0) == "1970-01-01T00:00:00.000000Z"
    assert iso(WALL) == "2023-11-14T22:13:20.250000Z"
