# simlidar: `make install && make demo`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build; on a GPU machine install your CUDA torch first and run `make install TORCH=`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
SYSTEM_LIBS := libusb-1.0-0 libgl1 libegl1 libgomp1

.PHONY: install system-libs demo train-demo test bench gpu-check lint

install: system-libs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(TORCH),$(BIN)/pip install --quiet "$(TORCH)")
	$(BIN)/pip install --quiet -e ".[dev]"
	@echo "installed: $$($(BIN)/simlidar --version)"

# Open3D's shared libraries: installed when we are root with apt, else the apt line is printed.
system-libs:
	@command -v dpkg >/dev/null || { echo "not a Debian system: install Open3D's GL/USB libraries ($(SYSTEM_LIBS)) yourself"; exit 0; }; \
	missing=$$(for lib in $(SYSTEM_LIBS); do dpkg -s $$lib >/dev/null 2>&1 || echo $$lib; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "Open3D needs system libraries; run: sudo apt-get install -y $$missing"; \
	fi

demo:
	$(BIN)/simlidar generate --images examples/scenes --sensor hdl64 --out out/demo --views 2 --overwrite
	@echo "read it back: see 'Reading a shard' in README.md"

# A first model on the demo's shards, CPU-sized (width 16, 128x256 crops, batch 2, no loader
# process, a checkpoint every 15 steps): under a minute on 2 idle cores. Re-run: it resumes.
train-demo:
	@test -d out/demo || $(MAKE) demo
	$(BIN)/simlidar train --shards out/demo --out runs/demo --width 16 --crop 128 256 --batch-size 2 --workers 0 \
		--steps 60 --save-every 15 --log-every 5
	@echo "next: simlidar eval --checkpoint runs/demo/last.pt --shards out/demo"

test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench:
	$(BIN)/simlidar bench

# What a GPU gives (teacher, generate on GPU actors, AMP training, torchrun) in one run of under
# 8 minutes on one GPU; without a GPU, its CPU half in a few minutes. Table and out/bench-gpu.json.
gpu-check:
	$(BIN)/simlidar bench gpu --json out/bench-gpu.json

lint:
	$(BIN)/ruff check .
