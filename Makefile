# parity — top-level wrapper around CMake and ctest.
#   make demo    install dependencies, build, and start parity on the embedded demo world
#   make test    install dependencies, build, run the whole suite, then again under ASan+UBSan
#   make models  rebuild the demo models in models/ from their recipe
#   make bench   build and run the benchmarks (figures for the README's performance table)
#   make fuzz    build the libFuzzer targets with clang and fuzz each for FUZZ_SECONDS
#   make test-tsan  the suite (as under ASan) under ThreadSanitizer: not part of `make test`
#                (about 3 minutes more); run it after changing locks, atomics or threads
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
DATA ?= data

.PHONY: all deps build demo models test test-fast test-asan test-tsan bench fuzz clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Only the parity binary (not the tests and benchmarks), so the demo is up quickly.
demo: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target parity
	./$(BUILD)/parity demo --data $(DATA)

# Rebuilds the shipped demo models from their recipe (minutes on two cores).
models: build
	./models/recipe.sh

test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: deps
	@CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPARITY_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE slow

# Both halves always run; each prints its result, and the target fails if either failed.
test: deps
	@fast=0; asan=0; \
	$(MAKE) --no-print-directory test-fast || fast=$$?; \
	$(MAKE) --no-print-directory test-asan || asan=$$?; \
	echo "make test: normal build: $$( [ $$fast -eq 0 ] && echo passed || echo FAILED )"; \
	echo "make test: ASan+UBSan build: $$( [ $$asan -eq 0 ] && echo passed || echo FAILED )"; \
	[ $$fast -eq 0 ] && [ $$asan -eq 0 ]

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
