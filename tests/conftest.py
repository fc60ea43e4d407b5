"""The order tests run in. `make test` spreads whole files over three
workers (pytest-xdist --dist loadfile), handing them out in collection
order; the longest cluster files go first, so that none of them starts last
and keeps the run going alone (longest first keeps the slowest worker close
to a third of the total)."""
import os

# The load test first; next to it the long files that time nothing (kill -9, fuzz), then the
# ones that measure failover while the load test may still run.
LONGEST_FIRST = ("test_load_health.py", "test_crash.py", "test_fuzz.py", "test_failover.py", "test_members_ha.py",
                 "test_heal.py", "test_chaos.py", "test_rolling.py", "test_members.py", "test_order.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return (LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST),
                "unit" in str(item.fspath))
    items.sort(key=rank)          # stable: within a file, the written order
