# mps2-an385 (Cortex-M3) under qemu-system-arm: included by the top Makefile, which defines the
# toolchain variables (CARGO, FW, ARM, ARM_OUT, B, IMAGE, SIZE, DEVICE, OVERLAYS, LINT_OVERLAYS).
BOARDS += mps2-an385

MPS2_STORAGE := 0x00300000
QEMU_ARM := qemu-system-arm -M mps2-an385 -nographic -monitor none -semihosting-config enable=on,target=native -nic user,restrict=on

.PHONY: firmware-mps2-an385 tcp-copy images-mps2-an385 run-qemu-mps2-an385 size-mps2-an385 lint-mps2-an385

# rota.elf ships; rota-power-cut.elf has the power-cut injection the QEMU power-cut tests use (cut=<n>).
firmware-mps2-an385:
	@mkdir -p $(B)/mps2-an385
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385
	cp $(ARM_OUT)/rota-mps2-an385 $(B)/mps2-an385/rota.elf
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385 --features power-cut
	cp $(ARM_OUT)/rota-mps2-an385 $(B)/mps2-an385/rota-power-cut.elf

# The plain TCP copy example (network baseline, docs/network.md) and the guestfwd bridge it needs.
tcp-copy:
	@mkdir -p $(B)/mps2-an385
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385 --features power-cut --example tcp_copy
	cp $(ARM_OUT)/examples/tcp_copy $(B)/mps2-an385/tcp_copy.elf
	$(CARGO) build -q $(FW) $(ARM) -p rota-board-mps2-an385 --example serial_copy
	cp $(ARM_OUT)/examples/serial_copy $(B)/mps2-an385/serial_copy.elf
	$(CARGO) build -q -p rota-bridge
	cp target/debug/rota-bridge $(B)/rota-bridge

images-mps2-an385: overlays
	$(IMAGE) -o $(B)/mps2-an385/storage.bin $(DEVICE) $(foreach o,$(OVERLAYS),$(o)=$(B)/thumbv7m/$(o).blob)

# The storage image is loaded into memory (not persistent; the system tests pass storage=<file>).
run-qemu-mps2-an385:
	timeout 60 $(QEMU_ARM) -kernel $(B)/mps2-an385/rota.elf \
	  -device loader,file=$(B)/mps2-an385/storage.bin,addr=$(MPS2_STORAGE) </dev/null

size-mps2-an385: size-overlays
	@echo "== mps2-an385 (Cortex-M3)"; $(SIZE) $(B)/mps2-an385/rota.elf $(foreach o,$(OVERLAYS),$(B)/thumbv7m/$(o).blob)

# The board and the overlays on thumbv7m.
lint-mps2-an385:
	$(CARGO) clippy -q $(FW) $(ARM) -p rota-board-mps2-an385 $(LINT_OVERLAYS) -- -D warnings
