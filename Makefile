# One entry point per chore. `make gen` regenerates gen/ from protos/;
# `make lint` runs buf lint; `make check` runs ruff and mypy; `make test` runs pytest.
PY ?= python

.PHONY: gen protodeps lint breaking check test gen-check bench bench-quick

protodeps:
	$(PY) scripts/protodeps.py

gen:
	$(PY) scripts/gen.py

lint: protodeps
	buf lint

breaking: protodeps
	$(PY) scripts/breaking.py

# Fails if gen/ differs from what protos/ generate.
gen-check: gen
	git diff --exit-code --stat -- gen
	@test -z "$$(git status --porcelain -- gen)" || (git status --porcelain -- gen; exit 1)

check:
	ruff check services gateway tests bench scripts
	ruff format --check services gateway tests bench scripts
	$(PY) scripts/typecheck.py

test:
	$(PY) -m pytest

# Figures for BENCHMARKS.md (not a test): every bench/ script in turn, then the report
# between BENCHMARKS.md's `make bench` markers (about 30 min; bench-quick: small sizes).
bench:
	$(PY) scripts/bench_report.py

bench-quick:
	$(PY) scripts/bench_report.py --quick
