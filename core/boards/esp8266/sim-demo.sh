#!/bin/sh
# Builds the esp8266 sim firmware and the overlay demo, fills a flash-window image with the demo
# record, and runs qemu-system-xtensa. Extra arguments go to the firmware as semihosting arguments
# (fault | reset | time). Exit status = the firmware's.
#
# Env: CARGO_TARGET_DIR (default /work/target-esp), OVERLAY_TARGET_DIR (default ${CARGO_TARGET_DIR}-overlay)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
target="$root/targets/xtensa-esp8266-none-elf.json"
: "${CARGO_TARGET_DIR:=/work/target-esp}"
: "${OVERLAY_TARGET_DIR:=${CARGO_TARGET_DIR}-overlay}"
zflags="-Zbuild-std=core,alloc -Zjson-target-spec"

(cd "$here/overlay-demo" && CARGO_TARGET_DIR="$OVERLAY_TARGET_DIR" \
    cargo build -q --profile firmware --target "$target" $zflags)
overlay="$OVERLAY_TARGET_DIR/xtensa-esp8266-none-elf/firmware/rota-esp8266-overlay-demo"
python3 "$here/overlay-demo/mkflash.py" "$overlay" "$CARGO_TARGET_DIR/esp8266-flash-window.bin"

(cd "$root" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR" \
    cargo build -q -p rota-board-esp8266 --profile firmware --target "$target" $zflags)
fw="$CARGO_TARGET_DIR/xtensa-esp8266-none-elf/firmware/rota-board-esp8266"
xtensa-lx106-elf-size "$fw"

semi="enable=on,arg=rota-board-esp8266"
for a in "$@"; do semi="$semi,arg=$a"; done
exec timeout 60 qemu-system-xtensa -M sim -cpu lx106 -nographic -monitor none \
    -semihosting-config "$semi" -kernel "$fw" \
    -device loader,file="$CARGO_TARGET_DIR/esp8266-flash-window.bin",addr=0x40280000,force-raw=on \
    </dev/null
