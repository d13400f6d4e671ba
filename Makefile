# The README's two commands: `make lab` (HEADLESS=1 to execute every demo instead) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: lab test

# the install also builds the JupyterLab sidebar (npm), so its sources count too
$(STAMP): pyproject.toml labextension/package.json $(wildcard labextension/src/*.ts labextension/style/*)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

lab: $(STAMP)
ifeq ($(HEADLESS),1)
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	for notebook in demos/*.ipynb; do \
	  start=$$(date +%s); \
	  $(BIN)/jupyter execute --timeout=600 "$$notebook" 2>"$$log" \
	    || { cat "$$log"; echo "$$notebook: FAILED"; exit 1; }; \
	  echo "$$notebook: ok in $$(( $$(date +%s) - start )) s"; \
	done
else
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) demos/00_tour.ipynb
endif

test: $(STAMP)
	$(BIN)/python -m pytest
