# flagfn — see README.md. `make run` and `make test` are the two commands that matter.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: run test bench lint build venv clean

# Project-local Python tools (moto for DynamoDB/Kinesis, ...). Git-ignored; rebuilt when
# requirements change.
$(VENV)/.installed: scripts/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r scripts/requirements.txt
	touch $@

venv: $(VENV)/.installed

run:
	FLAGS_FILE=examples/flags.json EVENTS_FILE=$${EVENTS_FILE:-events.jsonl} $(CARGO) run --bin flagfn

test: venv
	python3 scripts/golden_vectors.py --check
	$(CARGO) test --all-targets

bench:
	$(CARGO) bench

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

build:
	$(CARGO) build --release --bin flagfn

clean:
	rm -rf target $(VENV)
