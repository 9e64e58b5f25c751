# Two commands for a fresh machine (Python 3.11, no GPU needed):
#   make demo   set up .venv, then teacher -> distill -> export (lava, nir, onnx) -> parity -> report on digits
#   make test   set up .venv, then run the test suite
PY := .venv/bin/python
export OMP_WAIT_POLICY ?= PASSIVE
RUN ?= runs/demo

.PHONY: setup demo test test-gpu-kernel bench clean
setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh $(RUN)

test: setup
	@$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile tests

# The Triton neuron kernel (optional extra, ~290 MB wheel): installed with the constraints
# (CPU torch stays), tested on CPU in Triton's interpreter (CUDA when TRITON_INTERPRET is 0)
test-gpu-kernel: setup
	@$(PY) -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt \
		-r scripts/requirements-gpu-kernel.txt
	@TRITON_INTERPRET=$${TRITON_INTERPRET:-1} $(PY) -m pytest -q tests/test_triton_kernel.py

bench: setup
	@$(PY) benchmarks/neuron.py && $(PY) benchmarks/distill_step.py

clean:
	rm -rf runs .pytest_cache
