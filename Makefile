# Wraps meson. `make devserver` and `make test` are the two entry points (README.md).

BUILD      ?= build
BUILD_FUZZ ?= build-fuzz
SANITIZE   := -Db_sanitize=address,undefined -Db_lundef=false

.PHONY: all deps build fuzz-build test devserver format clean

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
	ninja -C $(BUILD_FUZZ) fuzz_hello fuzz_config fuzz_chan

test: build fuzz-build
	t/run $(BUILD) $(BUILD_FUZZ)

devserver: build
	tools/devserver.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_FUZZ)
