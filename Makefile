# flagfn — see README.md. `make run` and `make test` are the two commands that matter.
SHELL  := /bin/bash
VENV   := .venv
PY     := $(VENV)/bin/python
CARGO  ?= cargo
export SAM_CLI_TELEMETRY := 0

.PHONY: run test test-arm64 test-rust test-template test-events test-rie rie-release cold-start package test-interop test-webclient test-streams test-cost cost bench loadtest lint build venv clean

# Project-local Python tools (moto, cargo-lambda, cfn-lint, SAM CLI, the OpenFeature SDK),
# pinned in scripts/requirements.txt. Git-ignored; rebuilt when the requirements change.
# Falls back to virtualenv where the interpreter was built without the venv module.
$(VENV)/.installed: scripts/requirements.txt
	@echo "== installing Python test tools into $(VENV) (first run: ~2 min)"
	python3 -m venv $(VENV) || { python3 -m pip install --quiet --user virtualenv && python3 -m virtualenv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
	touch $@

venv: $(VENV)/.installed

# OpenFeature's web SDK and OFREP web provider (npm), pinned by tests/webclient's
# package-lock.json, installed into tests/webclient/node_modules (git-ignored).
WEBCLIENT := tests/webclient
$(WEBCLIENT)/node_modules/.installed: $(WEBCLIENT)/package.json $(WEBCLIENT)/package-lock.json
	@echo "== installing the OpenFeature web client into $(WEBCLIENT)/node_modules"
	cd $(WEBCLIENT) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

## make run — the function as a local server on 127.0.0.1:3000 over examples/flags.json,
## events to events.jsonl. No AWS account needed.
run:
	@echo "== why does a user get what they get? (docs/flagctl.md)"
	@echo "   cargo run -q --bin flagctl -- explain pricing-page --user user-2003 --context '{\"locale\":\"en-GB\"}' --file examples/flags.json"
	FLAGS_FILE=$${FLAGS_FILE:-examples/flags.json} EVENTS_FILE=$${EVENTS_FILE:-events.jsonl} $(CARGO) run --bin flagfn

## make test — everything, on a fresh machine: installs its tools, then unit, property,
## golden and integration tests (moto started by the tests themselves), the template
## lint, every sample event through `cargo lambda invoke` and through AWS's Runtime
## Interface Emulator (with Kinesis), the OpenFeature interop (Python SDK, and the web
## SDK seeing a flags-file edit through the change stream), and the bucketing MD5 on arm64.
test: venv test-rust test-arm64 test-template test-events test-rie test-interop test-webclient test-streams test-cost
	@echo "== all tests passed"

test-rust: venv
	python3 scripts/golden_vectors.py --check
	$(CARGO) test --all-targets

## The bucketing MD5 kernels (scalar and NEON) built for arm64, Lambda's Graviton, and
## run under qemu; installs the Rust target, Debian's cross linker and qemu when missing.
test-arm64:
	scripts/test_arm64.sh

test-template: venv
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint

test-events: venv test-rust
	$(PY) scripts/invoke_events.py --binary target/debug/flagfn

## Every sample event through aws-lambda-rie (from the SAM CLI) with events to moto
## Kinesis; prints INIT REPORT and the median billed Duration.
test-rie: venv test-rust
	$(PY) scripts/rie_events.py --binary target/debug/flagfn

## The release bootstrap (the release profile strips it) under aws-lambda-rie, for this
## machine's architecture (the figure Lambda bills; docs/performance.md).
rie-release: venv
	$(CARGO) build --release --bin flagfn
	mkdir -p target/rie && cp target/release/flagfn target/rie/bootstrap
	$(PY) scripts/rie_events.py --binary target/rie/bootstrap --rounds 10

## make cold-start — cold starts of the release bootstrap (this machine's architecture)
## under aws-lambda-rie, flags in moto DynamoDB: INIT and the first, cold-cache invocation.
cold-start: venv
	$(CARGO) build --release --bin flagfn
	$(PY) scripts/cold_start.py --binary target/release/flagfn --starts 7

## make package — what `sam build` ships: the arm64 `bootstrap` (release profile,
## stripped), zipped as `sam deploy` zips it. Prints both sizes; fails over 12 MiB
## unzipped or 4 MiB zipped (docs/performance.md, "The package"). Not part of `make test`:
## a clean arm64 release build takes 7–13 minutes here; `cargo test` checks the profile
## and the TLS stack that keep the package small.
package: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build
	$(PY) scripts/package.py .aws-sam/build/FlagFunction/bootstrap --arch aarch64 --zip target/lambda/flagfn.zip

test-interop: venv test-rust
	$(PY) tests/interop/test_ofrep.py --binary target/debug/flagfn

## OpenFeature's web provider on the local server: a flags-file edit arrives as
## ConfigurationChanged through the change stream (prints the time it took).
test-webclient: $(WEBCLIENT)/node_modules/.installed test-rust
	node $(WEBCLIENT)/ofrep_stream.mjs --binary target/debug/flagfn

## 10,000 clients on the local server's change stream: resident memory per client
## (fails over the stated 32 KiB), one edit's fan-out, shutdown (docs/performance.md).
test-streams: test-rust
	python3 scripts/stream_clients.py --binary target/debug/flagfn --clients 10000

## make cost — US dollars per million evaluations at 1, 100 and 10,000 requests/s, from
## the measured figures and prices in scripts/cost_inputs.json (docs/cost.md).
cost:
	python3 scripts/cost.py

## docs/cost.md's table equals `make cost`'s output (plain python3, no tools needed).
test-cost:
	cd scripts && python3 -m unittest -q test_cost

## make bench — criterion benchmarks (eval, cache, handler, events); figures in docs/performance.md.
bench:
	$(CARGO) bench

## make loadtest — the local server under a real load generator.
loadtest:
	scripts/loadtest.sh

## make lint — formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## make build — the release binary (SAM builds the Lambda package with `sam build`).
build:
	$(CARGO) build --release --bin flagfn

clean:
	rm -rf target $(VENV) .tools $(WEBCLIENT)/node_modules
