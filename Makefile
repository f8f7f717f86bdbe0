# Sluice. `make run` starts a single node with an embedded store; `make test` runs the test suite.
GO        ?= go
BIN       := bin/sluice
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
DATA_DIR  ?= ./sluice-data
# Packages with concurrent code that run under the race detector in `make test`.
RACE_PKGS := ./raftstore/... ./scheduler/... ./dispatcher/... ./netpool/... ./wal/... ./internal/... ./ingest/broker/...

.PHONY: build run cluster test test-race fuzz bench bench-scale lint clean screenshots

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sluice

run: build
	SLUICE_EGRESS_ALLOW_CIDRS=$${SLUICE_EGRESS_ALLOW_CIDRS:-127.0.0.0/8} ./$(BIN) serve --data-dir $(DATA_DIR)

# A local three-node cluster on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (see docs/operations.md).
cluster: build
	scripts/cluster.sh

# The whole suite: unit and integration tests (real Pebble, real Raft, real HTTP on 127.0.0.1), the
# race detector on the concurrent packages, and a short run of every fuzz target.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 10m ./...
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)
	$(MAKE) fuzz FUZZTIME=20000x

# A count, not a duration: Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" when a -fuzztime duration ends while a worker is mid-call on a loaded machine
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 200000x
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# The standard run takes about 11 minutes. BENCH_FLAGS=-quick for a ~1.5 minute smoke run;
# -scenarios a,b to pick scenarios; -profile for CPU profiles.
bench: build
	$(GO) run ./benchmarks/cmd/runner $(BENCH_FLAGS)

# The scale scenarios' long mode: backlog-growth at 1M and 10M stored (~30 min, ~10 GB of disk).
bench-scale: build
	$(GO) run ./benchmarks/cmd/runner -scale -scenarios backlog-growth,scheduler-scale $(BENCH_FLAGS)

# Retake docs/screenshots/*.png with the dashboard's browser tests (needs /usr/bin/chromium).
screenshots:
	SLUICE_UPDATE_SCREENSHOTS=1 $(GO) test -count=1 -run '^TestUI' ./cmd/sluice

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin
