# The two commands of a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: demo test stop setup unit cluster bench

setup:
	@bash scripts/setup.sh

## demo: a 3-node sandbox, a master in the background, the `web` service, its state.
demo: setup
	@bash scripts/demo.sh

## stop: stop the demo's master and remove its sandbox.
stop:
	@bash scripts/demo.sh stop

## test: unit tests and cluster tests against real sandboxes, three test files at a time
## (one sandbox per worker: 127.0.0.21-23, 31-33, 91-93; modules with their own use 51-75).
test: setup
	$(PY) -m pytest -q -n 3 --dist loadfile --durations=25 tests/unit tests/cluster

unit: setup
	$(PY) -m pytest -q tests/unit

cluster: setup
	$(PY) -m pytest -q tests/cluster

bench: setup
	$(PY) bench/converge.py
	$(PY) bench/heal.py
	$(PY) bench/failover.py
	$(PY) bench/failover.py --ttl 2 --quiet 300
	$(PY) bench/chaos.py --minutes 5
	$(PY) bench/renew.py
	$(PY) bench/rollout.py
