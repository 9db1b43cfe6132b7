# Outpost: the two commands are `make demo` and `make test` (see README.md).
VENV := .venv/bin
PYTEST_ARGS ?=
NODES ?= 3

.PHONY: setup images demo test test-fast lint format clean lab lab-down images-node vagrant-box

setup:
	bash scripts/setup.sh

images: setup
	$(VENV)/python -m images.build --out build/images

images-node: setup
	$(VENV)/python -m images.node_image --out build/node

vagrant-box: images-node
	$(VENV)/python -m images.vagrant_box --out build/node

demo: images
	$(VENV)/python scripts/demo.py $(DEMO_ARGS)

lab: images
	$(VENV)/outpost-lab up --nodes $(NODES) $(LAB_ARGS)

lab-down:
	$(VENV)/outpost-lab down $(LAB_ARGS)

# two workers: the VM-booting tests on one, the other integration tests on the other, unit
# tests wherever there is room (tests/parallel.py); PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)

# then the tests that must run with nothing beside them, in one process (exit 5, "nothing
# selected", is not a failure: PYTEST_ARGS may select tests of one pass only)
test: images
	rc=0; \
	$(VENV)/python -m pytest --phase shared $(XDIST) $(PYTEST_ARGS) || { r=$$?; [ $$r = 5 ] || rc=$$r; }; \
	$(VENV)/python -m pytest --phase alone $(PYTEST_ARGS) || { r=$$?; [ $$r = 5 ] || rc=$$r; }; \
	exit $$rc

test-fast: setup
	$(VENV)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports
	$(VENV)/mypy controller outpost_cli node_agent protocol attestation images lab inference_vm

format:
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

clean:
	rm -rf build .demo .pytest_cache
