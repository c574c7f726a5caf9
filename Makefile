# Targets a newcomer can guess. Each one installs what it needs first (scripts/bootstrap).
SHELL := /bin/bash
PYENV_PY := $(shell command -v pyenv >/dev/null 2>&1 && echo "$$(pyenv root)/versions/3.13.0/bin/python3.13")
export UV_PYTHON ?= $(if $(wildcard $(PYENV_PY)),$(PYENV_PY),python3.13)
export PATH := $(HOME)/.local/bin:$(PATH)
UV := uv run --frozen
# pytest exits 5 when it collected no tests: say so rather than leave a bare "Error 5"
PYTEST = @echo '$(UV) pytest $(1)'; $(UV) pytest $(1) || { rc=$$?; [ $$rc != 5 ] || echo 'make: pytest $(1) collected no tests' >&2; exit $$rc; }

.PHONY: run test check lint types format demo bench soak soak-short requirements clean

run:            ## start the service (embedded Redis unless MARKETPULSE_REDIS_URL is set)
	@scripts/bootstrap
	$(UV) marketpulse serve

test:           ## the whole test suite against a real redis-server (and headless Chromium)
	@scripts/bootstrap
	$(call PYTEST,-m "not e2e")
	$(call PYTEST,-m e2e)   # browser tests in their own process: Playwright drives its own loop

check: lint types test  ## format check, lint, strict types and import contracts, tests

lint:           ## ruff format --check and ruff on src, tests, bench and main.py
	@scripts/bootstrap
	$(UV) ruff format --check src tests bench main.py
	$(UV) ruff check src tests bench main.py

types:          ## mypy --strict (src, tests, bench, main.py) and the import contracts
	@scripts/bootstrap
	$(UV) mypy
	$(UV) lint-imports

format:
	@scripts/bootstrap
	$(UV) ruff format src tests bench main.py
	$(UV) ruff check --fix src tests bench main.py

demo:           ## against a running server: a session, an analysis, a switch, a restart
	@scripts/bootstrap
	$(UV) marketpulse demo

bench:          ## benchmarks; each prints JSON with a same-run baseline ratio
	@scripts/bootstrap
	$(UV) python -m bench

soak:           ## 20 users cycling sessions for 10 min, market every 1 s: RSS slope, fds, tasks, keys
	@scripts/bootstrap
	$(UV) python bench/soak.py --minutes 10

soak-short:     ## the soak for CI: the same, 90 s (exit 1 when a target is missed)
	@scripts/bootstrap
	$(UV) python bench/soak.py --minutes 1.5

requirements:   ## export requirements.txt (runtime) and requirements-dev.txt (tests: + dev, -e .)
	uv export --frozen --no-dev --no-hashes --no-emit-project -o requirements.txt --quiet
	uv export --frozen --all-groups --no-hashes -o requirements-dev.txt --quiet

clean:
	rm -rf .marketpulse .pytest_cache .mypy_cache .ruff_cache
