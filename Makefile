# Thin wrapper over CMake. `make` builds, `make test` runs the unit tests,
# `make asan` builds and tests under AddressSanitizer + UBSan.
BUILD ?= build
JOBS  ?= 2
CMAKE_FLAGS ?=

.PHONY: all test asan demo example bench clean
all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBT_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

demo: all
	./$(BUILD)/blindtuner demo

example: all
	./$(BUILD)/blindtuner example

bench: all
	./$(BUILD)/blindtuner bench ckks

clean:
	rm -rf $(BUILD) build-asan
