# Two commands are all a new machine needs (see README):
#   make run    install into .venv and start PipelineJobs on the embedded default
#   make test   install everything and run the whole test suite (what CI runs)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DATA_DIR ?= ./data

.PHONY: install run test lint format bench clean image local-base

# `make image`: the wheelhouse and the image (deploy/build-image.sh). A machine with no
# registry builds on a local Debian base: `make image BASE_IMAGE=$(LOCAL_BASE)` after
# `make local-base` (deploy/README.md).
IMAGE ?= localhost/pipelinejobs:latest
BASE_IMAGE ?= python:3.11-slim
LOCAL_BASE ?= localhost/pipelinejobs-base:bookworm

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/pipelinejobs serve --data-dir $(DATA_DIR)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	VENV=$(VENV) .ci/typecheck

test: lint
	$(BIN)/pytest

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

image: install
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) PYTHON=$(BIN)/python deploy/build-image.sh

local-base:
	BASE_IMAGE=$(LOCAL_BASE) deploy/local-base.sh

bench: install
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
