# `make test` is the project's test command: it installs what the browser
# tests need (Debian's chromium and chromium-driver) and the storage fault
# tests need (e2fsprogs, for an ext4 image) and the PostgreSQL tests need
# (Debian's postgresql, whose server they start themselves) and the DPoP client
# test and the MCP client test need (nodejs, npm and their locked npm packages, the
# example MCP server's Go modules) when missing, then runs every
# test with the race detector.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test deps bench bench-nodes bench-bound fuzz

test: deps
	go test -race ./...

deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	@if ! command -v mkfs.ext4 >/dev/null 2>&1 && ! [ -x /sbin/mkfs.ext4 ]; then \
		echo "installing e2fsprogs for the storage fault tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs; \
	fi
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		echo "installing nodejs and npm for the DPoP third-party client test (oauth4webapi)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	fi
	@if ! [ -d integration/testdata/dpop-node/node_modules ]; then \
		npm ci --no-audit --no-fund --prefix integration/testdata/dpop-node; \
	fi
	@if ! [ -d integration/testdata/mcp-node/node_modules ]; then \
		npm ci --no-audit --no-fund --prefix integration/testdata/mcp-node; \
	fi
	@cd examples/mcp && go mod download
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing postgresql for the storage/postgres tests (they start their own server)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	fi

bench:
	bash bench/run.sh

bench-nodes:
	bash bench/run.sh nodes

bench-bound:
	bash bench/run.sh bound

# `make fuzz` runs every fuzz target for FUZZTIME (default 30s) each and
# prints the execs of each; not part of `make test` or CI's own short run.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) bash .ci/fuzz
