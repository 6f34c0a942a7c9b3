# `make test` is the project's test command: it installs what the browser
# tests need (Debian's chromium and chromium-driver) when missing, then runs
# every test with the race detector.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test deps bench

test: deps
	go test -race ./...

deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

bench:
	bash bench/run.sh
