# Sluice — the two commands are `make run` and `make test` (README.md).
#
#   make deps    install missing system packages (apt-get; quiet and idempotent)
#   make build   configure and build everything C++ into build/ (ccache, -j$(JOBS))
#   make test    deps + build + every test suite (C++, C, Python, Node)
#   make run     deps + build + start sluiced in the foreground (data in data/sluiced)
#   make venv    the project Python venv (.venv) with the pinned test tools
#   make bench   run the engine benchmark matrix (docs/BENCHMARKS.md)
#   make bench-server  sluiced vs BullMQ on Redis over loopback (docs/BENCHMARKS.md)
#   make lint    clang-format check + clang-tidy on our sources
#   make sanitize  ASan/UBSan build of the core tests, then run them
#   make tsan    ThreadSanitizer build of the core and stress tests, then run them
#   make soak    long randomized and crash runs (not part of `make test`)

JOBS ?= 2
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
DATA_DIR ?= data

APT_PACKAGES := build-essential cmake ninja-build ccache pkg-config git \
  librocksdb-dev libprotobuf-dev protobuf-compiler libgtest-dev libgmock-dev \
  libbenchmark-dev clang-format clang-tidy \
  pybind11-dev python3-dev python3-pytest python3-venv \
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libcpp-httplib-dev prometheus-cpp-dev \
  libcli11-dev libjemalloc-dev redis-server openssl libsqlite3-dev

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

VENV ?= .venv

.PHONY: deps venv build test run bench bench-server lint sanitize tsan soak clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The project venv: pinned grpcio, grpcio-tools, protobuf, pytest (requirements-dev.txt) for the
# server suites and the Python clients. Rebuilt when the pins change.
$(VENV)/.stamp: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: deps $(VENV)/.stamp

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j$(JOBS)

# C++, C and Python suites through ctest (the server suites included), then the Node binding
# (npm ci, node-gyp, node --test), then the Python gRPC client (mypy --strict, pytest), then the
# TypeScript client (npm ci, codegen, toxiproxy fault tests, npm pack test).
test: build venv
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600
	JOBS=$(JOBS) bindings/node/run_tests.sh
	VENV=$(CURDIR)/$(VENV) SLUICED=$(CURDIR)/$(BUILD)/server/sluiced clients/python/run_tests.sh
	SLUICED=$(CURDIR)/$(BUILD)/server/sluiced clients/typescript/run_tests.sh

# sluiced in the foreground over $(DATA_DIR)/sluiced; it prints its addresses and how to
# connect. Pass options with ARGS, e.g. make run ARGS="--durability async".
run: build
	./$(BUILD)/server/sluiced --data-dir $(DATA_DIR)/sluiced --log-format text $(ARGS)

bench: build
	ENGINE_BENCH=$(BUILD)/bench/engine_bench bench/run_all.sh

# sluiced over loopback gRPC next to BullMQ on Redis (AOF everysec): bench/server_bench.sh.
bench-server: build
	bench/server_bench.sh $(BUILD)

lint: deps $(BUILD)/build.ninja
	clang-format --dry-run -Werror $$(git ls-files '*.cc' '*.h')
	clang-tidy -p $(BUILD) --quiet $$(git ls-files 'core/src/*.cc' 'server/src/*.cc')

sanitize: deps venv
	$(MAKE) build BUILD=build-asan CMAKE_FLAGS="-DSLUICE_SANITIZE=ON -DSLUICE_BUILD_BENCH=OFF"
	cd build-asan && ctest --output-on-failure -j$(JOBS) --timeout 900

# detect_deadlocks=0: batch leases hold more than the 64 mutexes TSan's deadlock detector tracks.
tsan: deps
	$(MAKE) build BUILD=build-tsan CMAKE_FLAGS="-DSLUICE_TSAN=ON -DSLUICE_BUILD_BENCH=OFF"
	cd build-tsan && TSAN_OPTIONS="detect_deadlocks=0 suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -j1 --timeout 1200

soak: build
	SLUICE_SOAK=1 ./$(BUILD)/tests/stress/sluice_stress_tests
	SLUICE_SOAK=1 ./$(BUILD)/tests/stress/sluice_crash_tests

clean:
	rm -rf build build-asan build-tsan
