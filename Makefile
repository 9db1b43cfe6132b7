# Outpost: the two commands are `make demo` and `make test` (see README.md).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup images demo test test-fast lint format clean

setup:
	bash scripts/setup.sh

images: setup
	$(VENV)/python -m images.build --out build/images

demo: images
	$(VENV)/python scripts/demo.py $(DEMO_ARGS)

test: images
	$(VENV)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

format:
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

clean:
	rm -rf build .demo .pytest_cache
