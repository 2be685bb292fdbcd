# One entry point. `make demo` runs the toolkit on the embedded default (a local simulated
# fleet); `make test` runs every test. Both set up what they need on a fresh Debian 12.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
SGLANG_VENV := .venv-sglang
SGLANG_VERSION ?= 0.5.6.post1
# The second version the toolkit speaks (issue 15): its parser lives in a small venv over
# SGLang's (below).
SGLANG_NEXT_VERSION := 0.5.23
SGLANG_NEXT_VENV := .venv-sglang-$(SGLANG_NEXT_VERSION)
SIM_WHEEL := build/wheelhouse/sglang_sim-0.1.0-py3-none-any.whl
# The model_weights role's pinned download tool, for test hosts that install from wheels.
HUB_WHEELHOUSE := build/wheelhouse-hub/.downloaded
# sglang-router and its dependencies, for test hosts (they reach no package index).
ROUTER_WHEELHOUSE := build/wheelhouse-router/.downloaded
# smg (SGLang Model Gateway) and its dependencies, likewise (Molecule fleet's gateway).
SMG_WHEELHOUSE := build/wheelhouse-smg/.downloaded
# A gateway's pin in roles/sglang_router/vars/main.yml (__sglang_router_gateway_packages).
gateway_pin = $$(sed -n 's/^  $(1): "\([^"]*\)"$$/\1/p' roles/sglang_router/vars/main.yml)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Python caches the bytecode of what it imports (__pycache__). Some CI images set
# PYTHONDONTWRITEBYTECODE=1, which makes every process compile every module it imports
# from source again: an ansible-playbook syntax check took 2.3 s of CPU instead of 1.3 s
# (the suite starts a few hundred ansible-playbook processes), and Molecule, pytest and
# ansible-lint paid the same at each start. The venvs below are installed without
# compiling; what the suite imports is compiled once, on first import.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: bootstrap testbed demo demo-down status plan test times-reset lint collection unit \
        conformance integration late molecule bench manifest clean router-manifests

## bootstrap: venv with the pinned controller tools, podman and the test image
bootstrap: $(VENV)/.installed testbed

# Both venvs are filled by uv (pinned in requirements.txt, bootstrapped with pip), which
# resolves and unpacks in parallel and compiles nothing: on these 2-core machines pip
# spent 32 s of CPU on the controller venv and ~200 s on SGLang's (with --no-compile;
# byte-compiling everything cost more still), uv ~3 s and ~30 s. Python compiles what the
# suite imports, once (see PYTHONDONTWRITEBYTECODE above). No cache: a run on a used
# machine downloads and costs what it costs on a fresh one.
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --no-cache

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "$$(grep '^uv==' requirements.txt)"
	$(UV_INSTALL) --python $(VENV)/bin/python -r requirements.txt
	touch $@

# `make test` sets TESTBED_READY in its sub-makes: the test bed was set up once already.
testbed: $(VENV)/.installed
ifndef TESTBED_READY
	tools/timed testbed ansible-playbook tools/testbed/setup.yml
endif

# Real SGLang, CPU only: its parser (conformance, manifest generator), its GSM8K script
# and bench_serving (integration). The last step compiles, once, what those import.
$(SGLANG_VENV)/.installed: tests/conformance/requirements.txt $(VENV)/.installed
	python3 -m venv $(SGLANG_VENV)
	$(UV_INSTALL) --python $(SGLANG_VENV)/bin/python -r tests/conformance/requirements.txt
	$(UV_INSTALL) --python $(SGLANG_VENV)/bin/python --no-deps sglang==$(SGLANG_VERSION)
	$(SGLANG_VENV)/bin/python -c "import sglang.srt.server_args, sglang.bench_serving, \
	  sglang.test.few_shot_gsm8k, huggingface_hub.cli.hf"
	touch $@

# SGLang 0.5.23 for its parser and chat parsers, CPU only, without a second copy of torch
# and the rest (~6 GB): a venv holding only what 0.5.23 adds (~170 MB, seconds), whose
# .pth puts SGLang 0.5.6.post1's site-packages after its own, so 0.5.23's sglang wins.
$(SGLANG_NEXT_VENV)/.installed: tests/conformance/requirements-$(SGLANG_NEXT_VERSION).txt \
  $(SGLANG_VENV)/.installed
	python3 -m venv $(SGLANG_NEXT_VENV)
	$(SGLANG_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
	  > "$$($(SGLANG_NEXT_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz-sglang-base.pth"
	$(UV_INSTALL) --python $(SGLANG_NEXT_VENV)/bin/python --no-deps \
	  -r tests/conformance/requirements-$(SGLANG_NEXT_VERSION).txt
	$(SGLANG_NEXT_VENV)/bin/python -c "import sglang.srt.server_args, \
	  sglang.srt.function_call.function_call_parser"
	touch $@

$(SIM_WHEEL): $(VENV)/.installed $(shell find -L tools/sglang_sim -type f -not -path '*/__pycache__/*')
	$(VENV)/bin/pip wheel --quiet --no-deps --wheel-dir build/wheelhouse tools/sglang_sim

$(HUB_WHEELHOUSE): roles/model_weights/defaults/main.yml $(VENV)/.installed
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --dest build/wheelhouse-hub \
	  "$$(sed -n 's/^model_weights_hub_package: "*\([^"]*\)"*$$/\1/p' roles/model_weights/defaults/main.yml)"
	touch $@

$(ROUTER_WHEELHOUSE): roles/sglang_router/vars/main.yml $(VENV)/.installed
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --dest build/wheelhouse-router \
	  "$(call gateway_pin,sglang-router)"
	touch $@

$(SMG_WHEELHOUSE): roles/sglang_router/vars/main.yml $(VENV)/.installed
	$(VENV)/bin/pip download --quiet --disable-pip-version-check --dest build/wheelhouse-smg \
	  "$(call gateway_pin,smg)"
	touch $@

# Debian 12's Prometheus and Alertmanager packages (the versions the sglang_monitoring role
# installs), fetched by the controller's apt: promtool and prometheus, unpacked, check the
# monitoring rules and dashboards in the unit stage (tests/unit/test_monitoring_*.py).
PROMETHEUS_DEBS := build/debs-prometheus/.downloaded
PROMTOOL := build/prometheus/usr/bin/promtool
# With their dependencies, for test hosts that reach no package index: a flat apt
# repository (Packages) that molecule/fleet copies to its monitoring host.
MONITORING_PACKAGES := prometheus prometheus-alertmanager
$(PROMETHEUS_DEBS):
	mkdir -p build/debs-prometheus
	cd build/debs-prometheus && apt-get download --quiet $(MONITORING_PACKAGES) \
	  $$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
	     --no-replaces --no-enhances $(MONITORING_PACKAGES) | grep '^[a-z]' | sort -u \
	     | grep -vxF -e prometheus -e prometheus-alertmanager)
	touch $@

PROMETHEUS_REPO := build/debs-prometheus/Packages
$(PROMETHEUS_REPO): $(PROMETHEUS_DEBS)
	cd build/debs-prometheus && apt-ftparchive packages . > Packages

$(PROMTOOL): $(PROMETHEUS_DEBS)
	dpkg-deb -x build/debs-prometheus/prometheus_*.deb build/prometheus
	touch $@

# The real sglang-router, from the test hosts' wheels, for the dashboards' check (a router
# in front of simulators, scraped by the real Prometheus: tests/unit/test_monitoring_dashboards.py).
ROUTER_VENV := build/router-venv/.installed
$(ROUTER_VENV): $(ROUTER_WHEELHOUSE)
	python3 -m venv build/router-venv
	$(UV_INSTALL) --python build/router-venv/bin/python --no-index \
	  --find-links build/wheelhouse-router sglang-router
	touch $@
SMG_VENV := build/smg-venv/.installed
$(SMG_VENV): $(SMG_WHEELHOUSE)
	python3 -m venv build/smg-venv
	$(UV_INSTALL) --python build/smg-venv/bin/python --no-index \
	  --find-links build/wheelhouse-smg smg
	touch $@

## demo: a local simulated fleet, converged by the real playbooks
demo: bootstrap $(SIM_WHEEL)
	ansible-playbook -i inventories/demo tools/demo/up.yml
	ansible-playbook -i inventories/demo playbooks/site.yml
	ansible-playbook -i inventories/demo playbooks/status.yml

demo-down: $(VENV)/.installed
	ansible-playbook -i inventories/demo tools/demo/down.yml

## plan: render every host's unit without connecting (INVENTORY=inventories/production)
INVENTORY ?= inventories/demo
plan: $(VENV)/.installed
	ansible-playbook -i $(INVENTORY) playbooks/plan.yml

## test: everything CI runs; ends with each stage's time (build/times.txt)
# Real SGLang's venv (torch and its wheels: ~6 GB written) installs in the background from
# the start, beside the bootstrap (on a fresh machine: the test image's debootstrap, mostly
# downloads), lint, the collection check and unit (side by side: each is one Python
# process). Then one queue, two jobs at a time: the Molecule scenarios, longest first, and
# `late` (conformance beside integration, which need the venv), which mostly waits on the
# simulator's latency model and so fills cores a scenario leaves idle. Make starts jobs in
# this order once their prerequisites are built; `late` needs none of the test hosts'
# wheels, so on a clean clone it starts beside `fleet`. -k: every job runs and every
# failure is reported. Logs: build/sglang-venv.log, build/molecule-<scenario>.log.
test: times-reset $(VENV)/.installed
	@tools/timed sglang-venv $(MAKE) --no-print-directory $(SGLANG_VENV)/.installed \
	  > build/sglang-venv.log 2>&1 & venv=$$!; \
	status=0; { $(MAKE) --no-print-directory bootstrap \
	  && $(MAKE) --no-print-directory TESTBED_READY=1 -j2 -Otarget lint collection unit \
	  && tools/timed "molecule and late" $(MAKE) --no-print-directory TESTBED_READY=1 \
	       SGLANG_VENV_PID=$$venv -j2 -k -Otarget $(addprefix molecule-,$(SCENARIOS)) late; \
	  } || status=$$?; \
	wait $$venv || { tail -n 40 build/sglang-venv.log; status=1; }; \
	cat build/times.txt; exit $$status

# Conformance beside integration, once SGLang's venv is there (make test installs it in
# the background, process SGLANG_VENV_PID).
late:
	@while [ -n "$(SGLANG_VENV_PID)" ] && kill -0 $(SGLANG_VENV_PID) 2>/dev/null; do sleep 5; done
	@test -e $(SGLANG_VENV)/.installed \
	  || { echo "SGLang's venv did not install: build/sglang-venv.log" >&2; exit 1; }
	$(MAKE) --no-print-directory -j2 -Otarget conformance integration

times-reset:
	@mkdir -p build && rm -f build/times.txt

lint: $(VENV)/.installed
	tools/timed yamllint yamllint --strict .
	tools/timed ansible-lint ansible-lint

# The repository as the collection kimi_k2.sglang: built, installed without Galaxy, its
# plan playbook run from outside the checkout (same plan files), offline ansible-test sanity.
collection: $(VENV)/.installed
	tools/timed collection tools/collection-check

# The real gateways' tests (marked real_router) run against venvs of the pinned wheels.
# Three workers, a module each at a time (a module's servers are its fixtures'): the tests
# mostly wait on servers starting (a real gateway: 5-12 s), 247 s in one process, 93 s in
# three. Each worker takes ports no other is given (tests/unit/sim_process.py).
unit: $(VENV)/.installed $(PROMTOOL) $(ROUTER_VENV) $(SMG_VENV)
	SGLANG_ROUTER_PYTHON=$(CURDIR)/build/router-venv/bin/python \
	  SMG_PYTHON=$(CURDIR)/build/smg-venv/bin/python \
	  tools/timed unit pytest -q -n 3 --dist loadfile --junitxml=build/junit-unit.xml tests/unit

conformance: $(SGLANG_VENV)/.installed $(SGLANG_NEXT_VENV)/.installed $(VENV)/.installed
	SGLANG_PYTHON=$(CURDIR)/$(SGLANG_VENV)/bin/python \
	  SGLANG_NEXT_PYTHON=$(CURDIR)/$(SGLANG_NEXT_VENV)/bin/python \
	  tools/timed conformance pytest -q tests/conformance

# Two workers, a test module each at a time (--dist loadfile): one module's tests share
# one demo fleet (tests/integration/test_demo.py) or the checkout's plan/ (test_plan.py).
# Its waits (bench_serving against the simulator's latency model) overlap the demo's
# converge. (loadgroup would split a module: pytest 9 ignores xdist 3.8's group suffix.)
integration: bootstrap $(SGLANG_VENV)/.installed $(SIM_WHEEL)
	SGLANG_PYTHON=$(CURDIR)/$(SGLANG_VENV)/bin/python tools/timed integration \
	  pytest -q -n 2 --dist loadfile --junitxml=build/junit-integration.xml tests/integration

# Every scenario, longest first, MOLECULE_LANES at a time (logs: build/molecule-*.log);
# molecule-<scenario> runs one. tests/unit/test_testbed.py checks that this list names
# every scenario. fleet's second converge runs under Mitogen's strategy (the opt-in).
SCENARIOS ?= fleet model_weights gpu_stack pd gates
MOLECULE_LANES ?= 2
MITOGEN_PLUGINS = $$(tools/mitogen-env | sed -n 's/^export ANSIBLE_STRATEGY_PLUGINS=//p')
molecule: bootstrap $(SIM_WHEEL) $(HUB_WHEELHOUSE) $(ROUTER_WHEELHOUSE) $(SMG_WHEELHOUSE) \
  $(PROMETHEUS_REPO)
	MITOGEN_STRATEGY_PLUGINS=$(MITOGEN_PLUGINS) \
	  tools/timed molecule tools/testbed/molecule-lanes $(MOLECULE_LANES) $(SCENARIOS)

molecule-%: bootstrap $(SIM_WHEEL) $(HUB_WHEELHOUSE) $(ROUTER_WHEELHOUSE) $(SMG_WHEELHOUSE) \
  $(PROMETHEUS_REPO)
	MITOGEN_STRATEGY_PLUGINS=$(MITOGEN_PLUGINS) tools/testbed/molecule-lanes 1 $*

# molecule/fleet mounts SGLang's venv into its hosts (the group communication check's
# torch). Under `make test`, which installs it in the background (SGLANG_VENV_PID), the
# scenario waits for that install instead of starting a second one.
.PHONY: sglang-venv-ready
molecule molecule-fleet: sglang-venv-ready
sglang-venv-ready:
	@while [ -n "$(SGLANG_VENV_PID)" ] && kill -0 $(SGLANG_VENV_PID) 2>/dev/null; do sleep 5; done
	@$(MAKE) --no-print-directory $(SGLANG_VENV)/.installed

## bench: converge timings, plan at fleet scale, evaluator overhead, weights staging (each prints a table)
bench: bootstrap $(SIM_WHEEL) $(HUB_WHEELHOUSE)
	python bench/converge
	python bench/plan_scale
	python bench/gsm8k_overhead
	python bench/weights_staging

## manifest: regenerate manifests/sglang/<version>.json of both versions from their parsers
manifest: $(SGLANG_VENV)/.installed $(SGLANG_NEXT_VENV)/.installed
	$(SGLANG_VENV)/bin/python tools/gen_sglang_manifest.py > manifests/sglang/$(SGLANG_VERSION).json
	$(SGLANG_NEXT_VENV)/bin/python tools/gen_sglang_manifest.py \
	  > manifests/sglang/$(SGLANG_NEXT_VERSION).json

clean:
	rm -rf $(VENV) $(SGLANG_VENV) $(SGLANG_NEXT_VENV) build plan

## router-manifests: rewrite manifests/router/*.json from the pinned gateway wheels
router-manifests: $(ROUTER_WHEELHOUSE) $(SMG_WHEELHOUSE)
	pin=$(call gateway_pin,smg); python tools/gen_router_manifest.py \
	  build/wheelhouse-smg/smg-*.whl > manifests/router/$${pin/==/-}.json
	pin=$(call gateway_pin,sglang-router); python tools/gen_router_manifest.py \
	  build/wheelhouse-router/sglang_router-*.whl > manifests/router/$${pin/==/-}.json
