# vcw: two commands. `make run` scans every bundled sample on embedded defaults;
# `make test` runs the whole test suite. Both install what is missing first.
SHELL := /bin/bash
CARGO ?= cargo
VCW := target/release/vcw
SAMPLES := samples/bigbuckbunny.mp4 samples/bikes.mp4 samples/carphone_pristine.mp4

.PHONY: run test setup setup-test models samples clips build image lint bench goldens clean-assets

run: setup build
	@# exit status 1 means "something was flagged", which is a result, not a failure
	$(VCW) scan $(SAMPLES) || [ $$? -eq 1 ]

test: setup setup-test clips
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) test --locked

setup:
	scripts/setup

setup-test:
	scripts/setup-test

models:
	scripts/setup models runtime

samples:
	scripts/setup samples

# The long-GOP clip the gap test needs (the 2-minute 1080p clip is for benchmarks).
clips: setup
	samples/generate longgop

build:
	$(CARGO) build --release --locked

# The OCI image (localhost/vcw:<version>; scripts/image says how to push it).
image: setup build
	scripts/image

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

bench: setup build
	samples/generate all
	scripts/bench
	scripts/bench_service.py

# Regenerate tests/data/golden.json with the reference Python packages.
goldens: setup
	scripts/goldens
