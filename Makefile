# kiln: `make demo` sets up, builds and runs the demo; `make test` sets up, builds and runs every test.
# Both install what they need: Debian packages (apt, when missing) and PyPI packages into .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
DEBIAN_PACKAGES := libopenblas-dev libdnnl-dev libgtest-dev libgmock-dev nlohmann-json3-dev libxxhash-dev g++ make

export KILN_BUILD_DIR := $(abspath $(BUILD_DIR))

.PHONY: all setup apt-deps venv configure build test test-cpp test-python test-sanitizers fuzz-long demo gpu-check format clean

all: build

setup: apt-deps venv

# Installs the Debian packages only when one is missing (needs root or sudo then).
apt-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: requirements-dev.txt requirements-cuda.txt pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	if command -v nvcc >/dev/null 2>&1 && [ ! -f /usr/local/cuda/include/cudnn.h ]; then \
	  $(PY) -m pip install -q -r requirements-cuda.txt; fi
	# The kiln package itself, editable: python/kiln in place, libraries found in build/lib.
	KILN_SKIP_NATIVE=1 $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

configure: setup
	$(VENV)/bin/cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja \
	  -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=$(abspath $(PY)) $(CMAKE_ARGS)

build: configure
	$(VENV)/bin/cmake --build $(BUILD_DIR) -j $(JOBS)

test-cpp: build
	cd $(BUILD_DIR) && $(abspath $(VENV))/bin/ctest --output-on-failure -j $(JOBS)

test-python: build
	$(PY) -m pytest -q tests/python tests/onnx_backend

# ASan+UBSan (clang) over the C++ unit tests, the fuzz regressions and the Python suite, then each
# fuzz target for FUZZ_SECONDS, then TSan (gcc) over the threading tests. Installs clang when
# missing; a stage whose tool cannot be installed is skipped with a message
# (scripts/ci-sanitizers.sh).
FUZZ_SECONDS ?= 30
SANITIZER_STAGES ?= asan python fuzz tsan
test-sanitizers: build
	JOBS=$(JOBS) VENV=$(VENV) FUZZ_SECONDS=$(FUZZ_SECONDS) KILN_CLI=$(abspath $(BUILD_DIR))/bin/kiln \
	  scripts/ci-sanitizers.sh $(SANITIZER_STAGES)

test: test-cpp test-python test-sanitizers

# A longer fuzz run on a many-core machine (scripts/fuzz-long.sh: SECONDS per target, all cores).
fuzz-long: build
	scripts/fuzz-long.sh

demo: build
	$(PY) scripts/demo.py

# On a machine with an NVIDIA GPU and torch: builds, runs the GPU tests and the benchmarks.
gpu-check:
	scripts/gpu-check.sh

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp' '*.h' '*.cu')

clean:
	rm -rf $(BUILD_DIR) out
