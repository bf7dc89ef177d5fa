# snodebox. `make run` boots the node; `make test` runs every test.
# Both install what they need first (scripts/install-deps.sh).

GO      ?= go
BIN     := bin
BUILD   := build
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/snodebox/snodebox/appliance/node.Version=$(VERSION)
export GOTOOLCHAIN ?= auto
# The machine's own Go (if any) first; Debian's backports Go otherwise. Either
# fetches the exact toolchain go.mod names through the module proxy.
export PATH := /usr/local/go/bin:$(PATH)
# go refuses to run without a cache directory, which it derives from HOME; a
# chroot or a bare service environment may not set HOME.
ifeq ($(HOME),)
export HOME := $(shell getent passwd $$(id -u) | cut -d: -f6)
endif

.PHONY: all deps build image test bench run run-kernel run-hosted devnet fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/snoded ./cmd/snoded
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/snodectl ./cmd/snodectl
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/snoded-arm64 ./cmd/snoded
	@ls -l $(BIN)

# Every test, QEMU boots included. Go's own summary lines end the output.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...

# Benchmarks print figures and ratios against the targets; never pass/fail on
# time. The last lines gather every figure that has a target (benchfig).
# make bench PPROF=build/pprof also profiles the nodes under load (snoded
# run --pprof: BenchmarkSnoded's three loads, the 3-node swarm's entry and a
# member) and prints where their time went.
PPROF ?=
bench: deps
	@mkdir -p $(BUILD)
	SNODEBOX_PPROF_DIR=$(if $(PPROF),$(abspath $(PPROF))) $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./... 2>&1 | tee $(BUILD)/bench.txt
	@echo; echo "== figures against their targets (from $(BUILD)/bench.txt)"
	@grep -h ' FIGURE | ' $(BUILD)/bench.txt | sed 's/^.* FIGURE | //'

# Hosted node on this machine (no image needed).
run-hosted: build
	$(BIN)/snoded run --data $(BUILD)/hosted --listen 127.0.0.1:22021 --status 127.0.0.1:8080

# A flashable SD-card image: make image BOARD=rpi4 (rpi3, qemu-arm64).
BOARD ?= qemu-arm64
IMAGE  = $(BUILD)/image/snodebox-$(BOARD).img
image: build
	$(BIN)/snodectl image build --board $(BOARD) --snoded $(BIN)/snoded-arm64 --out $(IMAGE)

# The qemu-arm64 SD-card image under QEMU -M virt, booted through U-Boot and
# the A/B slots: storage RPC on https://127.0.0.1:22021, status page on
# http://127.0.0.1:8080. The card is kept in build/qemu (data and slots
# survive reruns). Ctrl-C powers the guest off cleanly.
run: build
	$(BIN)/snodectl image build --board qemu-arm64 --snoded $(BIN)/snoded-arm64 --out $(BUILD)/image/snodebox-qemu-arm64.img
	$(BIN)/snodectl qemu --board qemu-arm64 --image $(BUILD)/image/snodebox-qemu-arm64.img --state $(BUILD)/qemu \
		--forward 127.0.0.1:22021-:22021 --forward 127.0.0.1:8080-:80

# The fast path tests use: kernel and initramfs straight into QEMU, no U-Boot.
run-kernel: build
	$(BIN)/snodectl qemu --board qemu-arm64 --state $(BUILD)/qemu-kernel --snoded $(BIN)/snoded-arm64 \
		--forward 127.0.0.1:22021-:22021 --forward 127.0.0.1:8080-:80

# Every checked-in fuzz target (func FuzzX in a _test.go file) for FUZZTIME
# each: go test -fuzz takes one target per run. All targets run even after a
# failure; the failing inputs land in the package's testdata/fuzz/ and the
# failed targets are listed at the end.
FUZZTIME ?= 10s
fuzz: deps
	@failed=""; \
	for dir in $$(grep -rlE --include='*_test.go' --exclude-dir=.git --exclude-dir=$(BUILD) --exclude-dir=$(BIN) '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -n1 dirname | sort -u); do \
		for target in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2 | sort -u); do \
			echo "== $$dir $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$dir || failed="$$failed $$dir:$$target"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz targets that failed:$$failed"; exit 1; fi

devnet: build
	$(BIN)/snodectl devnet up --nodes 7 --dir $(BUILD)/devnet

clean:
	rm -rf $(BIN)
