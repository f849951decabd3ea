# parity — top-level wrapper around CMake and ctest.
#   make demo    install dependencies, build, and start parity on the embedded demo world
#   make test    install dependencies, build, run the whole suite, then again under ASan+UBSan,
#                then the portability checks (make test-portability)
#   make test-portability  every src file compiled for x86-64-v2 and -v3 with gcc and clang
#                (scripts/compile-check.sh), and the arm64 cross build's C unit tests under
#                qemu (make test-arm64); the kernel tests per instruction set run in test-fast
#   make models  rebuild the demo models in models/ from their recipe
#   make bench   build and run the benchmarks (figures for the README's performance table)
#   make fuzz    build the libFuzzer targets with clang and fuzz each for FUZZ_SECONDS
#   make test-tsan  the suite (as under ASan) under ThreadSanitizer: not part of `make test`
#                (about 3 minutes more); run it after changing locks, atomics or threads
JOBS ?= $(shell nproc)
# NATIVE=ON compiles for this CPU (-march=native): faster, not portable. The default binary
# runs on any x86-64 and picks its kernels at run time.
NATIVE ?= OFF
# The port `make demo` serves on (127.0.0.1).
DEMO_PORT ?= 8080
BUILD ?= build
ARM64_BUILD ?= build-arm64
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
DATA ?= data

.PHONY: all deps deps-arm64 build demo models test test-fast test-asan test-tsan test-portability test-arm64 bench fuzz clean

all: build

deps:
	@./scripts/install-deps.sh

# The arm64 cross compiler, Debian's arm64 libraries (multiarch) and qemu-user.
deps-arm64:
	@./scripts/install-deps.sh --arm64

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DPARITY_NATIVE=$(NATIVE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Only the parity binary (not the tests and benchmarks), so the demo is up quickly.
demo: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DPARITY_NATIVE=$(NATIVE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target parity
	./$(BUILD)/parity demo --data $(DATA) --port $(DEMO_PORT)

# Rebuilds the shipped demo models from their recipe (minutes on two cores).
models: build
	./models/recipe.sh

test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: deps
	@CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPARITY_SANITIZE=ON -DPARITY_NATIVE=$(NATIVE) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE slow

# The three parts (normal build, ASan+UBSan build, portability) always all run; each one's
# result and time is printed at the end, and the target fails if any failed.
test: deps
	@rc=0; summary=""; \
	for part in test-fast test-asan test-portability; do \
	  start=$$(date +%s); \
	  if $(MAKE) --no-print-directory $$part; then r=passed; else r=FAILED; rc=1; fi; \
	  summary="$$summary""make test: $$part: $$r ($$(( $$(date +%s) - start )) s)\n"; \
	done; \
	printf "\n$$summary"; \
	exit $$rc

test-portability: deps
	@rc=0; \
	./scripts/compile-check.sh || rc=1; \
	$(MAKE) --no-print-directory test-arm64 || rc=1; \
	exit $$rc

# The arm64 cross build (cmake/aarch64-linux-gnu.cmake) and its C unit tests and fuzz corpus
# replays, run by ctest through qemu-aarch64-static (tests that drive the parity binary from
# Python or shell, and those labelled slow, are left to native runs). x86-64 hosts only.
test-arm64:
	@if [ "$$(uname -m)" != x86_64 ]; then echo "test-arm64: not an x86-64 host: skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory deps-arm64 && \
	cmake -S . -B $(ARM64_BUILD) -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release >/dev/null && \
	cmake --build $(ARM64_BUILD) -j $(JOBS) --target unit-tests && \
	ctest --test-dir $(ARM64_BUILD) --output-on-failure -j $(JOBS) -R '^(test_|fuzz_)' -LE slow

# A race is a failure (halt_on_error). The server's tests drive the real binary, built here
# with -fsanitize=thread, through PARITY_BIN.
test-tsan: deps
	@CC=clang CFLAGS="-fsanitize=thread -g -O1" LDFLAGS=-fsanitize=thread \
	  cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir $(TSAN_BUILD) --output-on-failure -j $(JOBS) -LE slow

bench: build
	./scripts/bench.sh $(BUILD)

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARITY_FUZZ=ON -DPARITY_SANITIZE=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	./scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(ARM64_BUILD)
