# Entry points; the README's first two commands are `make demo` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tools built or installed by ci/tools.sh (helm, promtool, prometheus, ...).
TOOLS_BIN := $(or $(INFERSCALE_CACHE),$(HOME)/.cache/inferscale)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: help venv constraints tools demo require-root run lint test test-fast test-prometheus test-cluster bench bench-kserve bench-scrape-priority bench-placement bench-slow-clients bench-overload bench-autoscale bench-calibrate bench-simulate bench-tune bench-ranks clean

.DEFAULT_GOAL := help

# Prerequisites run one after another, in the order written, even under -j:
# require-root must refuse before venv and tools install anything.
.NOTPARALLEL:

# Re-install whenever pyproject.toml changes; the stamp keeps `make test` quick.
# The harness (cluster/, package localcluster) is a package of its own: the
# server's image installs inferscale alone.
$(VENV)/.installed: pyproject.toml cluster/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,doctor,simulate]' -e ./cluster
	touch $@

# After a pin in pyproject.toml moves: resolve everything afresh, in a venv of
# its own, and write what it installed to constraints.txt.
CONSTRAINTS_VENV := .constraints-venv
constraints: ## re-resolve the Python dependencies from pyproject.toml into constraints.txt
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/pip install --quiet -e '.[dev,doctor,simulate]' -e ./cluster
	{ sed -n '/^#/p' constraints.txt; $(CONSTRAINTS_VENV)/bin/pip freeze --exclude-editable; } >constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(CONSTRAINTS_VENV)

venv: $(VENV)/.installed ## create .venv with the pinned Python dependencies

tools: ## build the pinned tools into ~/.cache/inferscale (ci/tools.sh)
	bash ci/tools.sh

# The whole autoscaling loop on this machine until Ctrl-C (cluster/localcluster).
demo: require-root venv tools ## the whole loop on a local control plane and real node, until Ctrl-C (root)
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m localcluster demo $(DEMO_ARGS)

# The demo runs a real node; refuse before installing anything.
require-root:
	@[ "$$(id -u)" = 0 ] || { echo "make demo runs a real node (containerd, the kubelet, iptables): run it as root" >&2; exit 1; }

run: venv ## the server alone on http://127.0.0.1:8080 (HOST, PORT)
	$(BIN)/inferscale serve --host $(HOST) --port $(PORT)

# PYTEST_ARGS narrows the run: the GitHub workflow deselects the cluster tests,
# whose real node needs cgroup v1 and GitHub's runners boot v2.
test: venv lint tools ## lint, then every test; CI runs exactly this
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# The markers say what a test needs (pyproject.toml); the unmarked tests need
# only these tools, not the Kubernetes build.
FAST_TOOLS := helm prometheus amtool linters tcpdump

test-fast: venv lint ## lint, then the tests that need no cluster, Prometheus, image or minutes of load
	bash ci/tools.sh $(FAST_TOOLS) >/dev/null
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest -m "not (slow or prometheus or cluster or image)"

test-prometheus: venv lint ## lint, then the tests that run a real Prometheus
	bash ci/tools.sh $(FAST_TOOLS) >/dev/null
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest -m prometheus

test-cluster: require-root venv lint tools ## lint, then the tests on the local cluster and the image (root)
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest -m "cluster or image"

bench: venv ## /metrics while every model slot is busy
	$(BIN)/python bench/metrics_under_load.py

# inferscale against KServe 0.21.0 under wrk, scraped by Prometheus, 3 rounds
# (~3.5 min; the first run also installs kserve into its own venv under the
# cache, about a minute).
bench-kserve: venv ## inferscale against KServe under wrk
	bash ci/tools.sh wrk tcpdump prometheus >/dev/null
	$(BIN)/python bench/vs_kserve.py $(BENCH_ARGS)

# Scrapes under saturation against the request path's nice level, 5 rounds of
# 3 levels (~7 min; root, to raise a priority above the shipped one).
bench-scrape-priority: venv ## scrape latency under saturation per nice level of the request path
	bash ci/tools.sh wrk tcpdump prometheus >/dev/null
	$(BIN)/python bench/scrape_priority.py $(BENCH_ARGS)

# Inside one pod: waits beside a free slot, busy slots at saturation (~1 min).
bench-placement: venv ## waits and busy slots inside one pod
	$(BIN)/python bench/placement.py $(BENCH_ARGS)

# Probe and scrape latency while 300 connections stall and every slot is taken (~1 min).
bench-slow-clients: venv ## probes and scrapes while clients stall
	$(BIN)/python bench/slow_clients.py $(BENCH_ARGS)

# Ten times the pod's capacity for ten minutes: memory, descriptors, threads, refusals.
bench-overload: venv ## ten times the capacity for ten minutes
	$(BIN)/python bench/overload.py $(BENCH_ARGS)

# Reaction times of the real loop, chart defaults against the seeds' windows (~30 min).
bench-autoscale: venv tools ## reaction times of the real loop (root)
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python bench/autoscale.py $(BENCH_ARGS)

# Every load scenario through the simulated loop on the chart's values (~30 s).
bench-simulate: venv ## every load scenario through the simulated loop
	$(BIN)/python bench/simulate.py $(BENCH_ARGS)

# The duration signal's knobs, then a companion metric's, the pods at rest, then a 13 s target with a band on the way up, then the 12 s target read through an offset, swept through the simulator against the loop's goals, 5 or 30 seeds of 4 h per row (~20 min; BENCH_ARGS="--sweep 8" for one sweep).
bench-tune: venv ## the HPA's knobs swept through the simulator
	$(BIN)/python bench/tune.py $(BENCH_ARGS)

# Where each saved real-loop run's peak, steady replicas, refusals and wait for Ready fall
# among 100 replays of its arrivals, for every timing whose runs recorded
# them, and the means over all of them (~25 s, no cluster).
RANKED_TIMINGS := scale-up-per-30s scale-up-tolerance min-replicas-1 offset-0 target-13
RANKED_RUNS := $(foreach timing,$(RANKED_TIMINGS),$(foreach run,$(wildcard docs/calibration/$(timing)*.json),$(timing)=$(run)))
bench-ranks: venv ## the saved real-loop runs ranked among the simulator's seeds
	$(BIN)/python bench/calibrate.py --timing chart --seeds 100 --ranks $(RANKED_RUNS)

# The simulator against the real loop: a 5x step up and down on the local
# control plane, then the same run simulated; plot in docs/calibration/.
# CALIBRATE_TIMING=fast (~12 min), chart (~37 min: the chart's defaults, as offset-4 pins them), offset-0 (~37 min:
# the defaults before them, the bare duration), min-replicas-1 (~37 min: those from one pod at rest), utilization-0.7,
# duration-only (~30 min: the defaults until 2026-12-02), scale-up-per-30s, scale-up-tolerance or target-13
# (bench/calibrate.py), as root.
CALIBRATE_TIMING ?= fast
bench-calibrate: venv tools ## the simulator against the real loop (root)
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python bench/calibrate.py --timing $(CALIBRATE_TIMING) $(BENCH_ARGS)

lint: venv ## ruff: lint and format check; mypy: types of server/inferscale and cluster/localcluster
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean: ## remove .venv and the test caches
	rm -rf $(VENV) .pytest_cache .hypothesis

help: ## this list
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  %-20s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
