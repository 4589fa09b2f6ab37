# The two commands a newcomer needs (both set everything up on a fresh machine):
#   make demo   - run the detector on a simulated robot (ONNX Runtime CPU backend)
#   make test   - run the whole test suite
.PHONY: demo test lint typecheck format bench clean

demo:
	@bash scripts/bootstrap.sh demo
	.venv/bin/vibration-anomaly demo $(ARGS)

test:
	@bash scripts/bootstrap.sh test
	.venv/bin/python -m pytest $(ARGS)

lint:
	@bash scripts/bootstrap.sh test
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	@bash scripts/bootstrap.sh test
	.venv/bin/python tools/trt_stubs_for_mypy.py build/trt-stubs
	.venv/bin/mypy

format:
	@bash scripts/bootstrap.sh test
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench:
	@bash scripts/bootstrap.sh test
	for b in bench/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .venv build install log *.egg-info .pytest_cache
