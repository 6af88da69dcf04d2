#!/bin/bash
# Builds the probe once per candidate for each ISA given (thumbv7m, lx106; default both) with the
# repository's firmware profile, runs each under QEMU with -icount shift=5 and prints one line per
# build: flash (rota-size: every allocated section with contents), flash above the baseline's,
# instructions of one verification (clock ticks / ticks per instruction), stack of one verification.
# Run from the repository root: core/release/probe/measure.sh [thumbv7m] [lx106]
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
OUT=build/ed25519-probe
mkdir -p "$OUT"
CANDIDATES=${CANDIDATES:-none dalek dalek-fast compact compact-small salty release}
FW="--profile firmware -Zbuild-std=core,alloc"
cargo build -q -p rota-pack
isas=("$@"); [ ${#isas[@]} -gt 0 ] || isas=(thumbv7m lx106)
for isa in "${isas[@]}"; do
  case $isa in
    thumbv7m) target=(--target thumbv7m-none-eabi); dir=thumbv7m-none-eabi
      # TIMER0 at 25 MHz, 32 ns of virtual time per instruction.
      per_insn=0.8
      run() { qemu-system-arm -M mps2-an385 -nographic -monitor none \
        -semihosting-config enable=on,target=native -icount shift=5 -kernel "$1" </dev/null; } ;;
    lx106) target=(--target "$PWD/targets/xtensa-esp8266-none-elf.json" -Zjson-target-spec)
      dir=xtensa-esp8266-none-elf
      # CCOUNT at 40 MHz, 32 ns of virtual time per instruction.
      per_insn=1.28
      run() { qemu-system-xtensa -M sim -cpu lx106 -nographic -monitor none \
        -semihosting-config enable=on -icount shift=5 -kernel "$1" </dev/null; } ;;
    *) echo "unknown ISA $isa"; exit 2 ;;
  esac
  base=
  for c in $CANDIDATES; do
    features=(); [ "$c" = none ] || features=(--features "$c")
    if ! cargo build -q $FW "${target[@]}" -p rota-ed25519-probe "${features[@]}" 2>"$OUT/$isa-$c.log"; then
      printf '%-9s %-26s does not build: %s\n' "$isa" "$c" \
        "$(grep -m1 -o -e 'region .* overflowed by [0-9]* bytes' -e 'error[:[].*' "$OUT/$isa-$c.log")"
      continue
    fi
    elf=$OUT/$isa-$c.elf
    cp "target/$dir/firmware/rota-ed25519-probe" "$elf"
    flash=$(target/debug/rota-size "$elf" | sed -n 's/.*core flash[^0-9]*\([0-9]*\) bytes/\1/p')
    [ -n "$base" ] || base=$flash
    line=$(timeout 600 bash -c "$(declare -f run); run $elf" | grep '^probe:')
    ticks=$(sed -n 's/.*ticks=\([0-9]*\).*/\1/p' <<<"$line")
    stack=$(sed -n 's/.*stack=\([0-9]*\).*/\1/p' <<<"$line")
    insns=$(python3 -c "print(round($ticks / $per_insn))")
    printf '%-9s %-26s flash %6d B (+%6d)  instructions %10d  stack %5d B  [%s]\n' \
      "$isa" "$c" "$flash" $((flash - base)) "$insns" "$stack" "$line"
  done
done
