# The two README commands: `make run` and `make test`. Everything else is for developers.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint typecheck venv test-deps clean torture fuzz

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' \
		|| { echo "error: Python 3.11 or newer is required" >&2; exit 1; }
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Run the switch on its embedded defaults (SQLite under ./data, memory state, demo tenant).
## `make run CONFIG=my.toml` adds a configuration file (deploy/softswitch.example.toml).
CONFIG ?=
run: $(STAMP)
	@$(VPY) scripts/demo_info.py deploy/demo-seed.toml
	$(VENV)/bin/softswitch serve --seed deploy/demo-seed.toml --data ./data $(if $(CONFIG),--config $(CONFIG))

## Install test peers (SIPp, baresip) and start PostgreSQL/Redis when missing, then run every test.
test: $(STAMP) test-deps
	SOFTSWITCH_REQUIRE_PEERS=1 $(VENV)/bin/pytest

test-deps:
	@scripts/ensure-test-deps.sh

## Benchmark: stepped call rates through the switch and through Kamailio (reference); the
## switch offered 1.5x and 3x the rate it holds (tests/bench/overload_bench.py); the scale
## table (Kamailio, 1 worker on memory, 1 and 2 on Redis, two nodes: tests/bench/scale_bench.py); media
## streams from one media process and announce-then-hang-up calls/s (tests/bench/media_bench.py);
## the call steps with CDRs on and off on PostgreSQL (tests/bench/cdr_calls_bench.py).
bench: $(STAMP) test-deps
	@scripts/ensure-test-deps.sh --bench
	$(VPY) -m tests.bench.run
	$(VPY) -m tests.bench.overload_bench
	$(VPY) -m tests.bench.scale_bench
	$(VPY) -m tests.bench.routing_bench --inbound-only
	$(VPY) -m tests.bench.routing_bench
	$(VPY) -m tests.bench.media_bench
	$(VPY) -m tests.bench.cdr_calls_bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy switch routing billing media provisioning

torture: $(STAMP)
	@scripts/torture.sh

## Fuzz a running switch: 10^5 mutated/random UDP datagrams and 10^3 mutated TCP streams,
## then check it is alive, logged no traceback and still answers (not part of `make test`).
fuzz: $(STAMP)
	$(VPY) scripts/fuzz.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
