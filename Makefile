# rota: build, run and test. `make demo` and `make test` set everything up on a fresh Debian machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := demo

BOARD ?= mps2-an385
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
# itself while it runs in place), built with ROTA_VERSION=2.
UPDATED := app tick provision
# Largest blob image: one that does not fit the board's arena runs in place from flash (docs/overlay-format.md).
IMAGE_LIMIT := 65536

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

QEMU_ARM := qemu-system-arm -M mps2-an385 -nographic -monitor none -semihosting-config enable=on,target=native -nic user,restrict=on
QEMU_XT := qemu-system-xtensa -M sim -cpu lx106 -nographic -monitor none -semihosting-config enable=on
ESP_FLASH_WINDOW := 0x40280000
ESP_CHIP_STORAGE := 0x80000

.PHONY: setup toolchain packages esptool host-tools overlays firmware images qemu run-qemu size bench flash esp-images \
        esp-image-check demo test lint fixtures clean

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
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

esptool:
	@[ -x $(ESPTOOL) ] || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q esptool; }

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
	done

firmware:
	@mkdir -p $(B)/mps2-an385 $(B)/esp8266
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385
	cp $(ARM_OUT)/rota-mps2-an385 $(B)/mps2-an385/rota.elf
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385 --features power-cut
	cp $(ARM_OUT)/rota-mps2-an385 $(B)/mps2-an385/rota-power-cut.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 $(QUIET_XT)
	cp $(XT_OUT)/rota-board-esp8266 $(B)/esp8266/rota-sim.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features chip $(QUIET_XT)
	cp $(XT_OUT)/rota-board-esp8266 $(B)/esp8266/rota-chip.elf

.PHONY: tcp-copy
# The plain TCP copy example (network baseline, docs/network.md) and the guestfwd bridge it needs.
tcp-copy:
	@mkdir -p $(B)/mps2-an385
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385 --features power-cut --example tcp_copy
	cp $(ARM_OUT)/examples/tcp_copy $(B)/mps2-an385/tcp_copy.elf
	$(CARGO) build -q -p rota-bridge
	cp target/debug/rota-bridge $(B)/rota-bridge

# Storage images: a file store with the device config and the overlays and app, version 1
# (docs/flash-layout.md). The mps2 device reaches the server as 10.0.2.100:8266 through QEMU's guestfwd.
DEVICE := --device-id 1001 --secret demo-secret-1001 --server 10.0.2.100 --port 8266 --ip 10.0.2.15/24 --gateway 10.0.2.2
images: overlays
	$(IMAGE) -o $(B)/mps2-an385/storage.bin $(DEVICE) $(foreach o,$(OVERLAYS),$(o)=$(B)/thumbv7m/$(o).blob)
	$(IMAGE) -o $(B)/esp8266/storage.bin $(DEVICE) $(foreach o,$(OVERLAYS),$(o)=$(B)/lx106/$(o).blob)

## ---------- run ----------
# Boots BOARD under QEMU with its storage image; exits with the guest's status.
qemu: setup firmware images run-qemu

run-qemu:
ifeq ($(BOARD),mps2-an385)
	timeout 60 $(QEMU_ARM) -kernel $(B)/mps2-an385/rota.elf \
	  -device loader,file=$(B)/mps2-an385/storage.bin,addr=0x00300000 </dev/null
else ifeq ($(BOARD),esp8266)
	timeout 60 $(QEMU_XT) -kernel $(B)/esp8266/rota-sim.elf \
	  -device loader,file=$(B)/esp8266/storage.bin,addr=$(ESP_FLASH_WINDOW),force-raw=on </dev/null
else
	@echo "unknown BOARD=$(BOARD) (mps2-an385 or esp8266)"; exit 2
endif

# Update throughput (64 KB install against a plain TCP copy, same run) and no-update check-in bytes.
bench: setup firmware images tcp-copy
	$(CARGO) build -q -p rota-server -p rota-bridge -p rota-emu
	ROTA_BUILD=$(CURDIR)/$(B) target/debug/rota-bench

size: setup firmware images
	@$(CARGO) build -q -p rota-pack
	@cat $(B)/overlays.txt
	@echo "== mps2-an385 (Cortex-M3)"; $(SIZE) $(B)/mps2-an385/rota.elf $(foreach o,$(OVERLAYS),$(B)/thumbv7m/$(o).blob)
	@echo "== esp8266 sim (LX106)"; $(SIZE) $(B)/esp8266/rota-sim.elf $(foreach o,$(OVERLAYS),$(B)/lx106/$(o).blob)
	@echo "== esp8266 chip (LX106)"; $(SIZE) $(B)/esp8266/rota-chip.elf

# Chip images: image v1 at 0x0 (IRAM+DRAM), irom at 0x10000; the storage region at $(ESP_CHIP_STORAGE).
esp-images: setup firmware images
	$(ESPTOOL) --chip esp8266 elf2image --version 1 -o $(B)/esp8266/rota-chip- $(B)/esp8266/rota-chip.elf >/dev/null
	@ls $(B)/esp8266/rota-chip-0x*.bin

esp-image-check: esp-images
	@for f in $(B)/esp8266/rota-chip-0x00000.bin; do $(ESPTOOL) --chip esp8266 image-info $$f; done

flash: esp-images
ifneq ($(BOARD),esp8266)
	@echo "make flash is for BOARD=esp8266"; exit 2
endif
	$(ESPTOOL) --chip esp8266 -p $(PORT) write-flash 0x0 $(B)/esp8266/rota-chip-0x00000.bin \
	  0x10000 $(B)/esp8266/rota-chip-0x10000.bin $(ESP_CHIP_STORAGE) $(B)/esp8266/storage.bin

## ---------- the main job and the tests ----------
# The whole system: rota-server on 127.0.0.1, an emulated mps2-an385 updated end to end through QEMU's
# guestfwd and rota-bridge, the heap report, the fleet; then the ESP8266 core under the Xtensa sim.
demo: setup firmware images
	$(CARGO) build -q -p rota-server -p rota-bridge -p rota-emu
	ROTA_BUILD=$(CURDIR)/$(B) target/debug/rota-demo

# Round-trip fixtures: the app (it has relocations on both ISAs) linked at 0 and, by the linker itself,
# at other bases, so tests can compare the loader's relocation with the linker's output.
ARM_BASES := 0 0x00012340 0x20001000
XT_BASES := 0 0x00003000 0x40107000
fixtures: overlays
	@mkdir -p $(B)/fixtures
	@for b in $(ARM_BASES); do \
	  $(CARGO) rustc -q $(FW) $(ARM) -p rota-overlay-app -- -C relocation-model=pic -C link-arg=--defsym=rota_link_base=$$b; \
	  cp $(ARM_OUT)/app $(B)/fixtures/thumbv7m-app-at-$$b.elf; done
	@for b in $(XT_BASES); do \
	  $(CARGO) rustc -q $(FW) $(XT) -p rota-overlay-app -- -C link-arg=-Wl,--defsym=rota_link_base=$$b $(QUIET_XT); \
	  cp $(XT_OUT)/app $(B)/fixtures/lx106-app-at-$$b.elf; done

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy -q --all-targets -- -D warnings
	$(CARGO) clippy -q $(FW) $(ARM) -p rota-board-mps2-an385 $(foreach o,$(OVERLAYS),-p rota-overlay-$(o)) -- -D warnings
	$(CARGO) clippy -q $(FW) $(XT) -p rota-board-esp8266 $(foreach o,$(OVERLAYS),-p rota-overlay-$(o)) -- -D warnings $(QUIET_XT)

test: setup firmware images fixtures tcp-copy esp-image-check lint
	$(CARGO) build -q
	ROTA_BUILD=$(CURDIR)/$(B) $(CARGO) test -q
	$(CARGO) test -q -p rota-board-mps2-an385 --features power-cut --lib

clean:
	rm -rf $(B) target
