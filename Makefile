# Wraps meson. `make devserver` and `make test` are the two entry points (README.md).

BUILD      ?= build
BUILD_FUZZ ?= build-fuzz
BUILD_COV  ?= build-cov
FUZZ_SECONDS ?= 60
BUILD_RELEASE ?= build-release
SANITIZE   := -Db_sanitize=address,undefined -Db_lundef=false

.PHONY: all deps build fuzz-build fuzz test test-under-load devserver format clean release bench bench-smoke

all: build

deps:
	@tools/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(SANITIZE)

$(BUILD_FUZZ)/build.ninja:
	CC=clang meson setup $(BUILD_FUZZ) -Dfuzz=true $(SANITIZE)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The fuzz targets a build directory defines.
fuzz_targets = $$(ninja -C $(1) -t targets all | sed -n 's/^\(fuzz_[a-z0-9_]*\): .*/\1/p')

fuzz-build: deps $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ) build.ninja
	ninja -C $(BUILD_FUZZ) $(call fuzz_targets,$(BUILD_FUZZ))

# The fuzz targets again, with clang source-based coverage: what `make fuzz` measures.
$(BUILD_COV)/build.ninja:
	CC=clang CFLAGS="-fprofile-instr-generate -fcoverage-mapping" \
		LDFLAGS="-fprofile-instr-generate -fcoverage-mapping" \
		meson setup $(BUILD_COV) -Dfuzz=true $(SANITIZE)

# Every fuzz target for FUZZ_SECONDS each, then its parser's line coverage (t/README.md).
fuzz: fuzz-build $(BUILD_COV)/build.ninja
	ninja -C $(BUILD_COV) build.ninja
	ninja -C $(BUILD_COV) $(call fuzz_targets,$(BUILD_COV))
	FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz.sh $(BUILD_FUZZ) $(BUILD_COV)

test: build fuzz-build
	t/run $(BUILD) $(BUILD_FUZZ)

# `make test` three times in a row beside two CPU-bound processes (t/README.md).
test-under-load: build fuzz-build
	t/under-load $(BUILD) $(BUILD_FUZZ)

devserver: build
	tools/devserver.sh $(BUILD)

# Optimised, no sanitizers: what `make bench` measures (bench/README.md).
$(BUILD_RELEASE)/build.ninja:
	meson setup $(BUILD_RELEASE) --buildtype=release

# mc-proxy, and the admin process and CLI when the tree has them (bench's AddRoute step).
release: deps $(BUILD_RELEASE)/build.ninja
	ninja -C $(BUILD_RELEASE) build.ninja
	ninja -C $(BUILD_RELEASE) mc-proxy $$(ninja -C $(BUILD_RELEASE) -t targets all | \
		sed -n 's/^\(mc-proxy-admin\|mcproxyctl\): .*/\1/p')

# Peers and load tools are Debian packages (bench/deps.sh); not part of `make test`.
bench: release
	bench/deps.sh
	/usr/bin/python3 bench/bench.py --mc-proxy $(BUILD_RELEASE)/mc-proxy $(BENCH_ARGS)

bench-smoke: release
	bench/deps.sh
	/usr/bin/python3 bench/bench.py --smoke --mc-proxy $(BUILD_RELEASE)/mc-proxy $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_FUZZ) $(BUILD_COV) $(BUILD_RELEASE)
