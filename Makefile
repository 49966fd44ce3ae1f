# Entry points; the README's first two commands are `make demo` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tools built or installed by ci/tools.sh (helm, promtool, prometheus, ...).
TOOLS_BIN := $(or $(INFERSCALE_CACHE),$(HOME)/.cache/inferscale)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: venv tools demo require-root run test test-fast bench bench-kserve bench-placement bench-slow-clients bench-overload bench-autoscale bench-calibrate bench-simulate bench-tune clean

# Re-install whenever pyproject.toml changes; the stamp keeps `make test` quick.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,doctor,simulate]'
	touch $@

venv: $(VENV)/.installed

tools:
	bash ci/tools.sh

# The whole autoscaling loop on this machine until Ctrl-C (cluster/localcluster).
demo: require-root venv tools
	PATH="$(TOOLS_BIN):$$PATH" PYTHONPATH=cluster $(BIN)/python -m localcluster demo $(DEMO_ARGS)

# The demo runs a real node; refuse before installing anything.
require-root:
	@[ "$$(id -u)" = 0 ] || { echo "make demo runs a real node (containerd, the kubelet, iptables): run it as root" >&2; exit 1; }

run: venv
	$(BIN)/inferscale serve --host $(HOST) --port $(PORT)

test: venv tools
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest

test-fast: venv tools
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest -m "not slow"

bench: venv
	$(BIN)/python bench/metrics_under_load.py

# inferscale against KServe 0.21.0 under wrk, scraped by Prometheus, 3 rounds
# (~3.5 min; the first run also installs kserve into its own venv under the
# cache, about a minute).
bench-kserve: venv
	bash ci/tools.sh wrk prometheus >/dev/null
	$(BIN)/python bench/vs_kserve.py $(BENCH_ARGS)

# Inside one pod: waits beside a free slot, busy slots at saturation (~1 min).
bench-placement: venv
	$(BIN)/python bench/placement.py $(BENCH_ARGS)

# Probe and scrape latency while 300 connections stall and every slot is taken (~1 min).
bench-slow-clients: venv
	$(BIN)/python bench/slow_clients.py $(BENCH_ARGS)

# Ten times the pod's capacity for ten minutes: memory, descriptors, threads, refusals.
bench-overload: venv
	$(BIN)/python bench/overload.py $(BENCH_ARGS)

# Reaction times of the real loop, chart defaults against the seeds' windows (~30 min).
bench-autoscale: venv tools
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python bench/autoscale.py $(BENCH_ARGS)

# Every load scenario through the simulated loop on the chart's values (~20 s).
bench-simulate: venv
	$(BIN)/python bench/simulate.py $(BENCH_ARGS)

# The duration signal's knobs, then a companion metric's, swept through the simulator against the loop's goals, 5 seeds of 4 h per row (~3.5 min).
bench-tune: venv
	$(BIN)/python bench/tune.py $(BENCH_ARGS)

# The simulator against the real loop: a 5x step up and down on the local
# control plane, then the same run simulated; plot in docs/calibration/.
# CALIBRATE_TIMING=fast (~12 min), chart (~37 min: the chart's defaults), utilization-0.7 (~37 min: the defaults before them) or
# duration-only (~30 min: the defaults until 2026-12-02), as root.
CALIBRATE_TIMING ?= fast
bench-calibrate: venv tools
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python bench/calibrate.py --timing $(CALIBRATE_TIMING) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
