# esp8266 (Xtensa LX106): included by the top Makefile, which defines the toolchain variables (CARGO,
# FW, XT, XT_OUT, QUIET_XT, B, IMAGE, SIZE, ESPTOOL, PORT, DEVICE, OVERLAYS, LINT_OVERLAYS).
# Three machines, one cargo feature each (docs/boards-esp8266.md): sim and xtfpga under QEMU, and chip.
BOARDS += esp8266
FLASH_BOARDS += esp8266

# The flash window (the storage region) as the CPU sees it, and its offset in the chip's SPI flash.
ESP_FLASH_WINDOW := 0x40280000
ESP_CHIP_STORAGE := 0x80000
# The chip's flash map (linker/esp8266-chip.x): the image v1 at 0x0 (IRAM and DRAM segments) below
# the irom at 0x10000, the irom below the storage region, and the region (512 KB) ending within the
# first MB, the part the cache maps at 0x40200000 (Cache_Read_Enable(0, 0, 1)). esp-image-check holds
# the images to it.
ESP_CHIP_IROM := 0x10000
ESP_CHIP_REGION := 0x80000
ESP_CHIP_MAPPED_END := 0x100000
# The chip's device config: it has no network (no WiFi driver without Espressif's SDK), so it checks
# in over its serial port (link serial: rota-bridge serial joins UART0 to the server, and the
# address fields are unused). Its id and secret are what the server's repository knows it by
# (ESP-<id>.json); 1003 is make demo's device updated over its serial line.
ESP_CHIP_ID ?= 1003
ESP_CHIP_SECRET ?= demo-secret-1003
ESP_CHIP_DEVICE = --device-id $(ESP_CHIP_ID) --secret $(ESP_CHIP_SECRET) --server 127.0.0.1 --link serial
# The overlay arena's size (`_arena_size` in linker/esp8266-sim.x): a blob with relocations and a larger
# image runs in place from the window, relocated for its address there (stored so in the image too).
ESP_ARENA := 8192
# The machine `make qemu BOARD=esp8266` runs: MACHINE=sim (default) or MACHINE=xtfpga.
ESP8266_MACHINE := $(or $(MACHINE),sim)
QEMU_XT_sim := qemu-system-xtensa -M sim -cpu lx106 -nographic -monitor none -semihosting-config enable=on
# xtfpga: the Ethernet MAC always on a restricted user network (without any -nic QEMU would add one on
# an unrestricted network); the guest reaches nothing through it here (no guestfwd).
QEMU_XT_xtfpga := qemu-system-xtensa -M lx60-nommu -cpu lx106 -nographic -monitor none -serial stdio -semihosting-config enable=on \
  -nic user,restrict=on,model=open_eth

.PHONY: firmware-esp8266 tcp-copy-esp8266 images-esp8266 run-qemu-esp8266 size-esp8266 lint-esp8266 esp-images \
        esp-image-check flash-esp8266

# All three machines write the same cargo artifact: copy each right after its build. The xtfpga
# machine has a second build with power-cut injection (cut=<n>) for the QEMU power-cut tests, and
# the LoadStoreError handler's test firmware (examples/lx106_loadstore.rs: synthetic exceptions,
# since QEMU raises none) for tools/emu/tests/lx106_loadstore.rs.
firmware-esp8266:
	@mkdir -p $(B)/esp8266
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 $(QUIET_XT)
	cp $(XT_OUT)/rota-board-esp8266 $(B)/esp8266/rota-sim.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features chip $(QUIET_XT)
	cp $(XT_OUT)/rota-board-esp8266 $(B)/esp8266/rota-chip.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga $(QUIET_XT)
	cp $(XT_OUT)/rota-board-esp8266 $(B)/esp8266/rota-xtfpga.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga,power-cut $(QUIET_XT)
	cp $(XT_OUT)/rota-board-esp8266 $(B)/esp8266/rota-xtfpga-power-cut.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga --example lx106_loadstore $(QUIET_XT)
	cp $(XT_OUT)/examples/lx106_loadstore $(B)/esp8266/lx106-loadstore-xtfpga.elf

# The plain TCP copy on the xtfpga machine (the LX106's network baseline for make bench, as
# mps2-an385's tcp_copy; docs/network.md), with power-cut injection like that one. `make tcp-copy`
# builds both boards' copies.
tcp-copy: tcp-copy-esp8266
tcp-copy-esp8266:
	@mkdir -p $(B)/esp8266
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga,power-cut --example tcp_copy $(QUIET_XT)
	cp $(XT_OUT)/examples/tcp_copy $(B)/esp8266/tcp_copy-xtfpga.elf
	$(CARGO) build -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga --example serial_copy $(QUIET_XT)
	cp $(XT_OUT)/examples/serial_copy $(B)/esp8266/serial_copy-xtfpga.elf

# The window's 512 KB (flash offset 0x80000 on the chip), the in-place blobs relocated for their
# address in the window (the same on every machine). storage.bin (link tcp, the QEMU machines' and
# the tests'), and storage-chip.bin (link serial, the chip's ESP_CHIP_DEVICE: what make flash
# writes; it boots the xtfpga machine too, with its UART on a chardev socket).
ESP_IMAGE_ARGS = --xip-base $(ESP_FLASH_WINDOW) --arena $(ESP_ARENA) $(foreach o,$(OVERLAYS),$(o)=$(B)/lx106/$(o).blob)
images-esp8266: overlays
	$(IMAGE) -o $(B)/esp8266/storage.bin $(DEVICE) $(ESP_IMAGE_ARGS)
	$(IMAGE) -o $(B)/esp8266/storage-chip.bin $(ESP_CHIP_DEVICE) $(ESP_IMAGE_ARGS)

# The storage image is loaded into the window (not persistent; the xtfpga machine keeps it in a file
# with arg=storage=<path> on -semihosting-config, as the QEMU tests do).
run-qemu-esp8266:
ifeq ($(filter $(ESP8266_MACHINE),sim xtfpga),)
	@echo "unknown MACHINE=$(ESP8266_MACHINE) for BOARD=esp8266 (sim or xtfpga; the chip: make flash)"; exit 2
else
	timeout 60 $(QEMU_XT_$(ESP8266_MACHINE)) -kernel $(B)/esp8266/rota-$(ESP8266_MACHINE).elf \
	  -device loader,file=$(B)/esp8266/storage.bin,addr=$(ESP_FLASH_WINDOW),force-raw=on </dev/null
endif

size-esp8266: size-overlays
	@echo "== esp8266 sim (LX106)"; $(SIZE) $(B)/esp8266/rota-sim.elf $(foreach o,$(OVERLAYS),$(B)/lx106/$(o).blob)
	@echo "== esp8266 xtfpga (LX106)"; $(SIZE) $(B)/esp8266/rota-xtfpga.elf
	@echo "== esp8266 chip (LX106)"; $(SIZE) $(B)/esp8266/rota-chip.elf

# The board (each machine; the tcp_copy, serial_copy and lx106_loadstore examples with xtfpga) and the overlays
# on the LX106.
lint-esp8266:
	$(CARGO) clippy -q $(FW) $(XT) -p rota-board-esp8266 $(LINT_OVERLAYS) -- -D warnings $(QUIET_XT)
	$(CARGO) clippy -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga --lib --bins --example lx106_loadstore -- -D warnings $(QUIET_XT)
	$(CARGO) clippy -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features xtfpga,power-cut --lib --bins --example tcp_copy --example serial_copy -- -D warnings $(QUIET_XT)
	$(CARGO) clippy -q $(FW) $(XT) -p rota-board-esp8266 --no-default-features --features chip -- -D warnings $(QUIET_XT)

# Chip images: image v1 at 0x0 (IRAM+DRAM), irom at 0x10000; the storage region at $(ESP_CHIP_STORAGE).
esp-images: setup firmware images
	$(ESPTOOL) --chip esp8266 elf2image --version 1 -o $(B)/esp8266/rota-chip- $(B)/esp8266/rota-chip.elf >/dev/null
	@ls $(B)/esp8266/rota-chip-0x*.bin

# The image v1 (esptool image-info: segments, checksum), then every file's place in the flash map:
# each must end before the next begins, and the storage image must fill its region exactly and end
# within the mapped first MB.
esp-image-check: esp-images
	$(ESPTOOL) --chip esp8266 image-info $(B)/esp8266/rota-chip-0x00000.bin
	@fits() { size=$$(stat -c %s $$1); end=$$(($$2 + size)); \
	  if [ $$end -gt $$(($$3)) ]; then printf '%s: %d bytes at %#x end at %#x, past %#x\n' $$1 $$size $$2 $$end $$3; exit 1; fi; \
	  printf '%s: %d bytes at %#x..%#x (limit %#x)\n' $$1 $$size $$2 $$end $$3; }; \
	fits $(B)/esp8266/rota-chip-0x00000.bin 0 $(ESP_CHIP_IROM); \
	fits $(B)/esp8266/rota-chip-0x10000.bin $(ESP_CHIP_IROM) $(ESP_CHIP_STORAGE); \
	fits $(B)/esp8266/storage-chip.bin $(ESP_CHIP_STORAGE) $(ESP_CHIP_MAPPED_END); \
	size=$$(stat -c %s $(B)/esp8266/storage-chip.bin); \
	if [ $$size -ne $$(($(ESP_CHIP_REGION))) ]; then echo "storage-chip.bin: $$size bytes, not the region's $(ESP_CHIP_REGION)"; exit 1; fi

# The firmware and the chip's storage image (link serial); then `make serial-update PORT=...
# REPO=...` updates the chip from a server's repository over the same port.
flash-esp8266: esp-images
	$(ESPTOOL) --chip esp8266 -p $(PORT) write-flash 0x0 $(B)/esp8266/rota-chip-0x00000.bin \
	  $(ESP_CHIP_IROM) $(B)/esp8266/rota-chip-0x10000.bin $(ESP_CHIP_STORAGE) $(B)/esp8266/storage-chip.bin
