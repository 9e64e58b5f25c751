# Two commands for a fresh machine (Python 3.11, no GPU needed):
#   make demo   set up .venv, then teacher -> distill -> export (lava, nir, onnx) -> parity -> report on digits
#   make test   set up .venv, then run the test suite
PY := .venv/bin/python
export OMP_WAIT_POLICY ?= PASSIVE
RUN ?= runs/demo

.PHONY: setup demo test bench clean
setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh $(RUN)

test: setup
	@$(PY) -m pytest -q tests

bench: setup
	@$(PY) benchmarks/neuron.py && $(PY) benchmarks/distill_step.py

clean:
	rm -rf runs .pytest_cache
