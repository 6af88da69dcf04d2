#!/usr/bin/env bash
# Runs every fuzz target (or those named after the seconds) for SECONDS each on its seed corpus
# (fuzz/corpus/<target>/, written by the seeds program first), then prints the executions per target.
# A target that crashes leaves its input in fuzz/artifacts/<target>/ and makes this fail at the end.
# Used by `make fuzz` and `make fuzz-smoke` (docs/fuzzing.md).
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../target}/fuzz
cargo run -q -p rota-fuzz-seeds || exit 1
cargo fuzz build -O || exit 1
# Inputs larger than libFuzzer's default 4 KB bound: the store mounts a 24 KB region.
declare -A max_len=([store]=25000 [loader]=12400)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
failed=()
for t in "${targets[@]}"; do
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -n "${max_len[$t]:-}" ] && args+=(-max_len="${max_len[$t]}")
  if cargo fuzz run -O "$t" "corpus/$t" -- "${args[@]}" >"$log/$t" 2>&1; then
    :
  else
    failed+=("$t")
    grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log/$t" | head -5 >&2
  fi
done
printf '%-16s %12s %10s %s\n' target executions exec/s result
for t in "${targets[@]}"; do
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log/$t" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log/$t" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log/$t" | tail -1)
  result=ok
  [[ " ${failed[*]} " == *" $t "* ]] && result="CRASH (fuzz/artifacts/$t/)"
  printf '%-16s %12s %10s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$result"
done
[ ${#failed[@]} -eq 0 ]
