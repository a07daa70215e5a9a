# Two entry points (README "Quick start"): `make demo` and `make test`. Both create .venv first:
# CPU torch 2.13 (an unpinned torch would pull several GB of CUDA wheels), then this project in editable
# mode with its test extras. GPU users install their own torch build in their environment instead.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
CORES ?= 2
export PATH := $(BIN):$(PATH)

.PHONY: install demo test clean-results

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'torch==2.13.*'
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The main job on the embedded demo dataset: generate it, extract features, train/evaluate SDST (3 seeds),
# the summary pages and example figures (rule all), then the HTML report of all of it.
demo: install
	snakemake --cores $(CORES)
	snakemake --report results/demo/report.html
	@python -c "import json; m = json.load(open('results/demo/metrics.json'))['metrics']; \
	print('\n'.join(f'{k:24s} {v[\"mean\"]:6.2f} ± {v[\"std\"]:.2f}' for k, v in m.items() if not k.startswith('_') and v['mean'] is not None))"

# The test suite (exit code 5, "no tests collected", is not a failure).
test: install
	pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

clean-results:
	rm -rf results logs .snakemake
