# pyfleet.server — the two commands a newcomer needs:
#   make demo   build a Debian 12 test host and deploy the reference app with PostgreSQL and Redis on it
#   make test   lint + unit tests + integration tests + every Molecule scenario (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SCENARIOS ?= $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
WHEELHOUSE := build/wheelhouse/fleetdemo

.PHONY: setup engine image wheelhouse demo demo-destroy lint unit integration molecule test bench clean

setup:            ## Debian packages + .venv with the pinned tools
	scripts/setup.sh

engine: setup     ## start a Docker engine unless one answers
	scripts/docker-engine.sh

image: engine     ## Debian 12 systemd test-host image (debootstrap + docker import, cached)
	scripts/build-test-image.sh >/dev/null

wheelhouse: setup ## the reference app and its pinned dependencies, for --no-index installs
	scripts/build-wheelhouse.sh examples/apps/fleetdemo $(WHEELHOUSE)

demo: image wheelhouse
	scripts/demo.sh

demo-destroy:
	docker rm -f pyfleet-demo >/dev/null 2>&1 || true

lint: setup
	yamllint --strict .
	ansible-lint --offline
	ruff check plugins tests examples molecule
	scripts/sanity.sh
	ansible-galaxy collection build --force --output-path build/dist >/dev/null

unit: setup
	scripts/run-pytest.sh tests/unit
	scripts/app-tests.sh

integration: image wheelhouse
	scripts/run-pytest.sh tests/integration

molecule: image wheelhouse
	@for s in $(SCENARIOS); do echo "== molecule test -s $$s"; molecule test -s $$s; done

test: lint unit integration molecule
	@echo "make test: all suites passed"

bench: image wheelhouse
	bench/converge

clean: demo-destroy
	-molecule destroy --all
	rm -rf build
