# Wraps meson. `make devserver` and `make test` are the two entry points (README.md).

BUILD      ?= build
BUILD_FUZZ ?= build-fuzz
BUILD_RELEASE ?= build-release
SANITIZE   := -Db_sanitize=address,undefined -Db_lundef=false

.PHONY: all deps build fuzz-build test test-under-load devserver format clean release bench bench-smoke

all: build

deps:
	@tools/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(SANITIZE)

$(BUILD_FUZZ)/build.ninja:
	CC=clang meson setup $(BUILD_FUZZ) -Dfuzz=true $(SANITIZE)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

fuzz-build: deps $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ) build.ninja
	ninja -C $(BUILD_FUZZ) $$(ninja -C $(BUILD_FUZZ) -t targets all | sed -n 's/^\(fuzz_[a-z_]*\): .*/\1/p')

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
	rm -rf $(BUILD) $(BUILD_FUZZ) $(BUILD_RELEASE)
