# Wren — the two commands a newcomer needs are `make lab` and `make test`; each installs what it
# needs first (Debian packages, a virtualenv with the package, the cached kube-apiserver).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv's interpreter: Debian's python3.11 where it can make a venv. It is built with PGO and
# LTO, as the image's python:3.11 is; a plain source build (pyenv's, this machine's `python3`)
# is not, and runs every Python stage of a BGP learn ~20% slower (README, benchmarks).
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip' 2>/dev/null \
	&& echo /usr/bin/python3.11 || echo python3)
# The stamp names the interpreter, so a change of interpreter rebuilds the venv.
STAMP := $(VENV)/.installed-$(subst /,_,$(PYTHON))
APT_PACKAGES := python3.11-venv etcd-server etcd-client bird2 gobgpd iproute2 iptables nftables ipset \
	qemu-system-x86 linux-image-amd64 busybox-static golang-go rsync dpkg-dev iputils-ping procps
KUBE_APISERVER := $(HOME)/.cache/wren/kube-apiserver-v1.20.2/kube-apiserver

.PHONY: all deps venv kube-apiserver test test-unit test-vm lint lab lab-down bench clean

all: test

# apt only when something is missing, so a second run costs nothing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

kube-apiserver: deps
	bash tools/build-kube-apiserver.sh

test: deps venv kube-apiserver lint
	$(PY) -m pytest tests

test-unit: venv
	$(PY) -m pytest tests/unit

# IPIP tests inside Debian's own kernel under qemu (this machine's kernel has no ipip): one boot.
test-vm: deps venv
	$(PY) -m pytest tests/vm tests/unit/test_vm_runner.py

lint: venv
	$(VENV)/bin/ruff check wren agent bgp lab tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# A real multi-node cluster network in namespaces (MODE=bgp|rr|vxlan|vxlan-crosssubnet, NODES=4).
lab: deps venv
	$(PY) -m lab up

lab-down: venv
	$(PY) -m lab down

# Speed and memory against ip -batch, lab convergence and scale (bench/results/*.json, a plot).
bench: deps venv
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/bench_routes.py
	$(PY) bench/bench_agent.py
	$(PY) bench/bench_lab.py
	$(PY) bench/bench_bgp.py
	$(PY) bench/plot.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
