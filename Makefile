# pyfleet.server — the two commands a newcomer needs:
#   make demo   build a Debian 12 test host and deploy the reference app with PostgreSQL and Redis on it
#   make test   lint + unit tests + integration tests + every Molecule scenario (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Scenarios committed but not yet run by `make test` (tests/unit/test_molecule_lanes.py reads this line).
SCENARIOS_NOT_IN_LANES :=
SCENARIOS ?= $(filter-out $(SCENARIOS_NOT_IN_LANES),$(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
WHEELHOUSE := build/wheelhouse/fleetdemo
# Every step of `make test` goes through scripts/timed.sh; the table is printed at the end, pass or fail.
TIMED := scripts/timed.sh
export PYFLEET_TIMES := $(CURDIR)/build/times.tsv
# Molecule prints through rich, which folds lines at 80 columns when not on a terminal: a failed test id would
# be cut in two in the CI log.
export COLUMNS ?= 200

.PHONY: setup engine image wheelhouse demo demo-destroy lint unit integration molecule lanes test bench bench-dr clean

# `make test` runs lint and unit as steps of its lanes beside the Molecule scenarios, after setup: NO_SETUP=1 keeps
# them from running setup again while the scenarios use the tools it installs.
SETUP := $(if $(NO_SETUP),,setup)

setup:            ## Debian packages + .venv with the pinned tools
	$(TIMED) setup scripts/setup.sh

engine: setup     ## start a Docker engine unless one answers
	$(TIMED) engine scripts/docker-engine.sh

image: engine     ## Debian 12 systemd test-host image (debootstrap + docker import, cached)
	$(TIMED) image scripts/build-test-image.sh >/dev/null

wheelhouse: setup ## the reference app and its pinned dependencies, for --no-index installs
	$(TIMED) wheelhouse scripts/build-wheelhouse.sh examples/apps/fleetdemo $(WHEELHOUSE)

demo: image wheelhouse
	scripts/demo.sh

demo-destroy:
	docker rm -f pyfleet-demo >/dev/null 2>&1 || true

lint: $(SETUP)
	$(TIMED) lint:yamllint yamllint --strict .
	$(TIMED) lint:ansible-lint ansible-lint --offline
	$(TIMED) lint:ruff ruff check plugins tests examples molecule scripts
	$(TIMED) lint:sanity scripts/sanity.sh
	$(TIMED) lint:build ansible-galaxy collection build --force --output-path build/dist >/dev/null
	$(TIMED) lint:ee scripts/ee-check.sh

unit: $(SETUP)
	$(TIMED) unit scripts/run-pytest.sh -n 2 tests/unit
	$(TIMED) unit:app scripts/app-tests.sh
	$(TIMED) unit:promtool scripts/promtool-tests.sh

integration: image wheelhouse
	$(TIMED) integration scripts/run-pytest.sh tests/integration

# Two lanes side by side (scripts/molecule-lanes.sh; MOLECULE_LANES=serial for one); every scenario runs even after
# one failed (so one run shows every failure); the target fails at the end.
molecule: image wheelhouse
	scripts/molecule-lanes.sh $(SCENARIOS)

# What `make test` runs after lint and unit: the integration suite and every scenario, in the same lanes.
lanes: image wheelhouse
	scripts/molecule-lanes.sh integration $(SCENARIOS)

# `make test`: setup, the image and the wheelhouse, then every suite in lanes side by side: lint and unit (CPU-bound)
# as steps of the lanes beside the Molecule scenarios, which leave a core idle much of the time.
test:             ## every suite; a time table per suite and scenario at the end, pass or fail
	@mkdir -p build && rm -f $(PYFLEET_TIMES) build/failures.txt && date +%s >build/test-started && grep '^cpu ' /proc/stat >build/test-cpu-started && \
	  scripts/time-table.sh --hosts-cpu >build/test-hosts-cpu-started
	@rc=0; { $(MAKE) --no-print-directory image wheelhouse && \
	  scripts/molecule-lanes.sh lint unit integration $(SCENARIOS); } || rc=$$?; \
	  scripts/time-table.sh $(PYFLEET_TIMES) build/test-started build/test-cpu-started build/test-hosts-cpu-started; \
	  if [ $$rc = 0 ]; then echo "make test: all suites passed"; else echo "make test: FAILED"; fi; exit $$rc

bench: image wheelhouse
	bench/converge

bench-dr: image wheelhouse  ## RTO of 1 GB from the backup host, throughput vs plain tools (docs/dr-benchmark.md)
	bench/dr

clean: demo-destroy
	-molecule destroy --all
	rm -rf build
