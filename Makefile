# Thin wrapper over CMake. `make` builds, `make test` runs the unit tests,
# `make asan` builds and tests under AddressSanitizer + UBSan.  Both are
# development builds: they honour the test suite's BT_TEST_* fault hooks
# (-DBT_TEST_HOOKS=ON; a plain `cmake` configure, as for installing, has none).
BUILD ?= build
JOBS  ?= 2
CMAKE_FLAGS ?=

.PHONY: all test asan demo example bench clean python python-path
all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DBT_TEST_HOOKS=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBT_SANITIZE=ON -DBT_TEST_HOOKS=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

demo: all
	./$(BUILD)/blindtuner demo

example: all
	./$(BUILD)/example-ckks

bench: all
	./$(BUILD)/blindtuner bench ckks

clean:
	rm -rf $(BUILD) build-asan

# `make python`: builds, then makes `import blindtuner` (python/blindtuner, docs/PYTHON.md) work
# from any directory for $(PYTHON): a blindtuner.pth naming python/ goes into its site-packages
# (its user site if that is not writable).  Debian's python3 by default (python3-numpy).
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)
.PHONY: python
# a blindtuner.pth naming python/ in python3's site-packages (tools/install-deps runs it)
python-path:
	@dir=$$($(PYTHON) -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null); \
	if [ -z "$$dir" ] || ! mkdir -p "$$dir" 2>/dev/null || [ ! -w "$$dir" ]; then \
	  dir=$$($(PYTHON) -c 'import site; print(site.getusersitepackages())') && mkdir -p "$$dir"; fi; \
	echo "$(CURDIR)/python" > "$$dir/blindtuner.pth" && echo "python: $$dir/blindtuner.pth -> $(CURDIR)/python"

python: all python-path
	@cd / && BLINDTUNER_LIB=$${BLINDTUNER_LIB:-$(abspath $(BUILD))/libblindtuner.so} $(PYTHON) -c \
  'import blindtuner; print("python: import blindtuner: ok (" + blindtuner.library_path() + ")")'
