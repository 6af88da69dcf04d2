# rota: build, run and test. `make demo` and `make test` set everything up on a fresh Debian machine.
# Each board folder's core/boards/<board>/board.mk says how to build, image, run, size and lint that
# board; this file includes them all, so adding a board is adding a folder.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := demo

BOARD ?= mps2-an385
# The emulated machine of BOARD that `make qemu` runs (each board.mk has its default).
MACHINE ?=
PORT ?= /dev/ttyUSB0
TOOLCHAIN := nightly-2026-10-29
COMPONENTS := rust-src,llvm-tools,rustfmt,clippy
APT_PACKAGES := qemu-system-arm qemu-system-misc gcc-xtensa-lx106 binutils-xtensa-lx106 python3-venv
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO := cargo
B := build
VENV := .venv
ESPTOOL := $(VENV)/bin/esptool
# Every blob of a release, as rota-limits declares them (`BLOBS`).
OVERLAYS := $(shell sed -n 's/^pub const BLOBS: .* = \[\(.*\)\];/\1/p' core/limits/src/lib.rs | tr -d '",')
# The demo's update: a new application and new `tick` and `provision` overlays (provision replaces
# itself while it runs in place), built with ROTA_VERSION=2 for both ISAs (<isa>/v2/).
UPDATED := app tick provision
# Largest blob image: one that does not fit the board's arena runs in place from flash (docs/overlay-format.md).
# 128 KB: provision with Ed25519 verification is 94 KB on the LX106 (docs/signing.md).
IMAGE_LIMIT := 131072

# Firmware for both ISAs is built from rust-src: the pinned nightly ships no prebuilt thumbv7m std.
FW := --profile firmware -Zbuild-std=core,alloc
ARM := --target thumbv7m-none-eabi
XT_JSON := $(CURDIR)/targets/xtensa-esp8266-none-elf.json
XT := --target $(XT_JSON) -Zjson-target-spec
ARM_OUT := target/thumbv7m-none-eabi/firmware
XT_OUT := target/xtensa-esp8266-none-elf/firmware
# rustc warns on every Xtensa build that the CALL0 ABI lacks the `windowed` feature: known, see docs/boards.md.
QUIET_XT := 2> >(grep -v -e "windowed" -e "^ *|$$" -e "^ *= note" -e "^$$" >&2)

PACK := target/debug/rota-pack
IMAGE := target/debug/rota-image
SIZE := target/debug/rota-size

# The trial-boot test fixtures (overlays/fixtures/<name>, each packed as the blob it stands in for:
# <name>=<blob>), built by `make fixtures` only.
TRIAL_FIXTURES := app-panic=app app-fault=app app-hang=app provision-crash=provision

# Overlays are linted with the board of their ISA (each board.mk's lint-<board>), and the fixtures
# with them.
LINT_OVERLAYS := $(foreach o,$(OVERLAYS),-p rota-overlay-$(o)) $(foreach f,$(TRIAL_FIXTURES),-p rota-fixture-$(firstword $(subst =, ,$(f))))

# The storage images' device config: the mps2 device reaches the server as 10.0.2.100:8266 through
# QEMU's guestfwd (docs/flash-layout.md).
DEVICE := --device-id 1001 --secret demo-secret-1001 --server 10.0.2.100 --port 8266 --ip 10.0.2.15/24 --gateway 10.0.2.2

# The boards: each fragment adds its name to BOARDS (and FLASH_BOARDS if it has a chip to flash) and
# defines firmware-<board>, images-<board>, run-qemu-<board>, size-<board> and lint-<board>.
BOARDS :=
FLASH_BOARDS :=
include $(sort $(wildcard core/boards/*/board.mk))

.PHONY: setup toolchain packages esptool postgres host-tools overlays firmware images qemu run-qemu size size-overlays bench bench-fleet \
        flash no-flash serial-update unknown-board demo test lint lint-host fixtures fuzz fuzz-smoke fuzz-tools clean \
        browser-setup

## ---------- set-up (idempotent; quick when already done) ----------
setup: toolchain packages esptool

toolchain:
	@command -v rustup >/dev/null || { curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none; }
	@if ! rustup run $(TOOLCHAIN) rustc --version >/dev/null 2>&1 || \
	    ! rustup component list --toolchain $(TOOLCHAIN) --installed 2>/dev/null | grep -q rust-src; then \
	  rustup toolchain install $(TOOLCHAIN) --profile minimal -c $(COMPONENTS); fi

packages:
	@missing=""; \
	for t in qemu-system-arm:qemu-system-arm qemu-system-xtensa:qemu-system-misc \
	         xtensa-lx106-elf-gcc:gcc-xtensa-lx106 xtensa-lx106-elf-ld:binutils-xtensa-lx106; do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	python3 -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$(TEST_PACKAGES)" ]; then \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  command -v node >/dev/null || missing="$$missing nodejs npm"; \
	  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing="$$missing postgresql"; \
	    [ -e /etc/postgresql-common/createcluster.conf ] || { $(SUDO) mkdir -p /etc/postgresql-common && \
	      echo "create_main_cluster = false" | $(SUDO) tee /etc/postgresql-common/createcluster.conf >/dev/null; }; fi; \
	fi; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

# What only the tests need, installed by `packages` in the same one apt-get when a test target asks:
# Debian's chromium, node and npm for the dashboard's browser test, and PostgreSQL for the state tests.
test browser-setup postgres: TEST_PACKAGES := 1

# The dashboard's browser test (docs/dashboard.md): server/dashboard/browser's pinned playwright-core
# (no browser download: Debian's chromium), when missing.
BROWSER_DIR := server/dashboard/browser
browser-setup: packages
	@[ -d $(BROWSER_DIR)/node_modules ] || (cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error)

esptool:
	@[ -x $(ESPTOOL) ] || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q esptool; }

# PostgreSQL for the fleet-state tests (docs/state.md): a private cluster in $(PG_DIR) listening on
# 127.0.0.1:$(PG_PORT) only (trust auth for 127.0.0.1, its unix socket inside $(PG_DIR)), started
# unless it already answers. Debian's postgresql is installed only when no initdb is there (without
# its default cluster). PostgreSQL refuses to run as root: as root the cluster belongs to the
# postgres user (in /var/lib/postgresql/rota-<n> instead when a private parent directory keeps that
# user out of $(PG_DIR)).
PG_PORT := 55432
PG_DIR := $(CURDIR)/$(B)/postgres
ROTA_TEST_POSTGRES := postgres://rota@127.0.0.1:$(PG_PORT)/postgres
PG_AS := $(if $(filter 0,$(shell id -u)),runuser -u postgres --,)

postgres: packages
	@initdb=$$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1); \
	bin=$$(dirname $$initdb); \
	if $$bin/pg_isready -q -h 127.0.0.1 -p $(PG_PORT); then exit 0; fi; \
	dir=$(PG_DIR); mkdir -p $$dir; \
	if [ "$$(id -u)" = 0 ]; then chown postgres: $$dir; \
	  if ! runuser -u postgres -- test -w $$dir; then \
	    dir=/var/lib/postgresql/rota-$$(echo $(CURDIR) | cksum | cut -d' ' -f1); mkdir -p $$dir; chown postgres: $$dir; \
	    echo "postgres: the postgres user cannot reach $(PG_DIR) (a parent directory is private); using $$dir"; fi; fi; \
	if [ ! -f $$dir/data/PG_VERSION ]; then \
	  $(PG_AS) $$initdb -D $$dir/data -U rota -A trust >/dev/null; \
	  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' | $(PG_AS) tee $$dir/data/pg_hba.conf >/dev/null; \
	fi; \
	$(PG_AS) $$bin/pg_ctl -D $$dir/data -l $$dir/log -w -s \
	  -o "-c listen_addresses=127.0.0.1 -c port=$(PG_PORT) -c unix_socket_directories=$$dir" start; \
	$$bin/pg_isready -q -h 127.0.0.1 -p $(PG_PORT)

## ---------- build ----------
host-tools:
	$(CARGO) build -q -p rota-pack -p rota-image

# Overlays: a PIE at 0 on ARM (fat LTO rebuilds core as PIC), linked at 0 with relocations on Xtensa.
overlays: host-tools
	@mkdir -p $(B)/thumbv7m/v2 $(B)/lx106/v2
	@for o in $(OVERLAYS); do \
	  $(CARGO) rustc -q $(FW) $(ARM) -p rota-overlay-$$o -- -C relocation-model=pic; \
	  $(PACK) $(ARM_OUT)/$$o -o $(B)/thumbv7m/$$o.blob --limit $(IMAGE_LIMIT) --report; \
	  $(CARGO) rustc -q $(FW) $(XT) -p rota-overlay-$$o $(QUIET_XT); \
	  $(PACK) $(XT_OUT)/$$o -o $(B)/lx106/$$o.blob --limit $(IMAGE_LIMIT) --report; \
	done > $(B)/overlays.txt
	@for o in $(UPDATED); do \
	  ROTA_VERSION=2 $(CARGO) rustc -q $(FW) $(ARM) -p rota-overlay-$$o -- -C relocation-model=pic; \
	  $(PACK) $(ARM_OUT)/$$o -o $(B)/thumbv7m/v2/$$o.blob --limit $(IMAGE_LIMIT); \
	  ROTA_VERSION=2 $(CARGO) rustc -q $(FW) $(XT) -p rota-overlay-$$o $(QUIET_XT); \
	  $(PACK) $(XT_OUT)/$$o -o $(B)/lx106/v2/$$o.blob --limit $(IMAGE_LIMIT); \
	done

# Every board's firmware ELFs (build/<board>/*.elf).
firmware: $(addprefix firmware-,$(BOARDS))

# Storage images: a file store with the device config and the overlays and app, version 1
# (docs/flash-layout.md), per board (build/<board>/storage.bin).
images: overlays $(addprefix images-,$(BOARDS))

## ---------- run ----------
# Boots BOARD (MACHINE: one of its emulated machines) under QEMU with its storage image; exits with
# the guest's status.
qemu: setup firmware images run-qemu

run-qemu: $(if $(filter $(BOARD),$(BOARDS)),run-qemu-$(BOARD),unknown-board)

unknown-board:
	@echo "unknown BOARD=$(BOARD) ($(BOARDS))"; exit 2

# Update throughput (64 KB install against a plain TCP copy, same run) and no-update check-in bytes.
bench: setup firmware images tcp-copy
	$(CARGO) build -q -p rota-server -p rota-bridge -p rota-emu
	ROTA_BUILD=$(CURDIR)/$(B) target/debug/rota-bench

# Fleet scale: a 10,000-device boot storm and 10,000 slow links beside 100 fast devices, against an
# OK! baseline in the same run (server/storm; figures in docs/server.md). STORM_ARGS adds options,
# e.g. STORM_ARGS="--database postgres://... --instances 2".
bench-fleet: toolchain
	$(CARGO) build -q --release -p rota-server -p rota-storm
	target/release/rota-storm bench $(STORM_ARGS)

# The overlays' sizes, then each board's (size-<board> runs after size-overlays).
size: setup firmware images size-overlays $(addprefix size-,$(BOARDS))

size-overlays:
	@$(CARGO) build -q -p rota-pack
	@cat $(B)/overlays.txt

# Writes a chip: BOARD must be one that has one (its board.mk defines flash-<board>).
flash: $(if $(filter $(BOARD),$(FLASH_BOARDS)),flash-$(BOARD),no-flash)

no-flash:
	@echo "make flash is for BOARD=$(FLASH_BOARDS)"; exit 2

# Updates a device over its serial line from a server's repository: rota-server on
# 127.0.0.1:SERVER_PORT serving REPO as committed at REV, and rota-bridge serial joining PORT (a tty,
# e.g. a chip flashed with make flash behind its USB-serial adapter, or an emulated UART's chardev
# socket) to it at BAUD. The bridge prints the device's console and sends typed keys to it. Ctrl-C
# stops both, and either stopping stops the other. No board in it: the device's core does the
# serial link's framing (its config says link serial), so any board's device works.
# PORT must be given (its default is make flash's): a wrong line would be written to.
SERVER_PORT ?= 8266
BAUD ?= 115200
REV ?= HEAD
serial-update:
ifeq ($(origin PORT),file)
	@echo "make serial-update: give PORT=<the device's serial line: a tty such as /dev/ttyUSB0, or a QEMU chardev socket>"; exit 2
endif
	@[ -n "$(REPO)" ] || { echo "make serial-update: give REPO=<the server's repository, a git work tree> [REV=<revision>, default HEAD]"; exit 2; }
	$(CARGO) build -q -p rota-server -p rota-bridge
	@echo "serial-update: rota-server on 127.0.0.1:$(SERVER_PORT) serving $(REPO) at $(REV); rota-bridge serial on $(PORT) at $(BAUD) baud (Ctrl-C stops both)"
	@server=; bridge=; trap 'kill $$server $$bridge 2>/dev/null || true; wait' EXIT; trap 'exit 130' INT TERM; \
	target/debug/rota-server serve --repo "$(REPO)" --rev "$(REV)" --listen 127.0.0.1:$(SERVER_PORT) & server=$$!; \
	listening=$$(printf '0100007F:%04X 00000000:0000 0A' $(SERVER_PORT)); \
	for i in $$(seq 100); do grep -q "$$listening" /proc/net/tcp && break; \
	  kill -0 $$server 2>/dev/null || { echo "serial-update: rota-server did not start"; exit 1; }; sleep 0.1; done; \
	grep -q "$$listening" /proc/net/tcp || { echo "serial-update: rota-server not listening after 10 s"; exit 1; }; \
	target/debug/rota-bridge serial --line "$(PORT)" --baud $(BAUD) --server-port $(SERVER_PORT) <&0 & bridge=$$!; \
	wait -n $$server $$bridge

## ---------- the main job and the tests ----------
# The whole system: rota-server on 127.0.0.1, an emulated mps2-an385 and the ESP8266's LX106 on QEMU's
# xtfpga board, each updated end to end through QEMU's guestfwd and rota-bridge, their heap reports,
# the fleet holding both.
demo: setup firmware images fixtures
	$(CARGO) build -q -p rota-server -p rota-bridge -p rota-sign -p rota-emu
	ROTA_BUILD=$(CURDIR)/$(B) target/debug/rota-demo

# Round-trip fixtures: the app (it has relocations on both ISAs) linked at 0 and, by the linker itself,
# at other bases, so tests can compare the loader's relocation with the linker's output.
# Trial-boot fixtures (docs/trial-boot.md), per ISA in build/<isa>/fixtures/: an app that panics,
# one that faults, one that hangs and a provision that crashes at its start (TRIAL_FIXTURES).
ARM_BASES := 0 0x00012340 0x20001000
XT_BASES := 0 0x00003000 0x40107000
fixtures: overlays
	@mkdir -p $(B)/fixtures $(B)/thumbv7m/fixtures $(B)/lx106/fixtures
	@for b in $(ARM_BASES); do \
	  $(CARGO) rustc -q $(FW) $(ARM) -p rota-overlay-app -- -C relocation-model=pic -C link-arg=--defsym=rota_link_base=$$b; \
	  cp $(ARM_OUT)/app $(B)/fixtures/thumbv7m-app-at-$$b.elf; done
	@for b in $(XT_BASES); do \
	  $(CARGO) rustc -q $(FW) $(XT) -p rota-overlay-app -- -C link-arg=-Wl,--defsym=rota_link_base=$$b $(QUIET_XT); \
	  cp $(XT_OUT)/app $(B)/fixtures/lx106-app-at-$$b.elf; done
	@for f in $(TRIAL_FIXTURES); do name=$${f%%=*}; blob=$${f##*=}; \
	  $(CARGO) rustc -q $(FW) $(ARM) -p rota-fixture-$$name -- -C relocation-model=pic; \
	  $(PACK) $(ARM_OUT)/$$name -o $(B)/thumbv7m/fixtures/$$name.blob --name $$blob --limit $(IMAGE_LIMIT); \
	  $(CARGO) rustc -q $(FW) $(XT) -p rota-fixture-$$name $(QUIET_XT); \
	  $(PACK) $(XT_OUT)/$$name -o $(B)/lx106/fixtures/$$name.blob --name $$blob --limit $(IMAGE_LIMIT); \
	done

# Formatting and host clippy, then each board's firmware targets (lint-<board>).
lint: lint-host $(addprefix lint-,$(BOARDS))

lint-host:
	$(CARGO) fmt --all --check
	$(CARGO) clippy -q --all-targets -- -D warnings

# The fuzz targets (fuzz/, docs/fuzzing.md): each for FUZZ_SECONDS on its seed corpus, then the
# executions per target. fuzz-smoke runs them all briefly (at most 2 minutes in all): part of `test`.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
fuzz-tools:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install -q cargo-fuzz --locked

fuzz: setup fuzz-tools
	CARGO_TARGET_DIR=$(CURDIR)/target fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: setup fuzz-tools
	CARGO_TARGET_DIR=$(CURDIR)/target fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

test: setup postgres browser-setup fuzz-smoke firmware images fixtures tcp-copy esp-image-check lint
	$(CARGO) build -q
	ROTA_BUILD=$(CURDIR)/$(B) ROTA_TEST_POSTGRES=$(ROTA_TEST_POSTGRES) ROTA_BROWSER=1 $(CARGO) test -q
	$(CARGO) test -q -p rota-board-mps2-an385 --features power-cut --lib
	$(CARGO) test -q -p rota-hostflash --features power-cut

clean:
	rm -rf $(B) target
