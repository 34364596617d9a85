#!/usr/bin/env bash
# Coverage-guided fuzzing of berth's input parsers with AFL++ (cargo-afl, stable toolchain).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Runs each target (default: all five: loader dokku_parse webhook yaml_edit push_webhook) for SECONDS
# (default 60) over its committed seed corpus (fuzz/corpus/<target>/), one after the other,
# then prints execs, paths, coverage and crashes per target and exits 1 if any target
# crashed. Crashing inputs are left under $FUZZ_OUT/<target>/default/crashes/; copy one into
# fuzz/corpus/<target>/ (named `crash-…`) when fixing it, so `cargo test` keeps replaying it.
#
# Installs cargo-afl when it is missing (`cargo install cargo-afl`, which also builds AFL++
# with make and gcc). Set CARGO_LOCK=/path/to/lock to run the cargo commands under flock.
# docs/reliability.md records a real run.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(loader dokku_parse webhook yaml_edit push_webhook)
fi

cargo_() {
  if [ -n "${CARGO_LOCK:-}" ]; then flock "$CARGO_LOCK" cargo "$@"; else cargo "$@"; fi
}

if ! command -v cargo-afl >/dev/null 2>&1; then
  echo "installing: cargo-afl (crates.io; builds AFL++)" >&2
  cargo_ install cargo-afl --locked
fi
# AFL++ is built once per toolchain; "already built" is not an error.
cargo afl config --build >/dev/null 2>&1 || true

target_dir="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"
out="${FUZZ_OUT:-$target_dir/afl}"
(cd fuzz && CARGO_TARGET_DIR="$target_dir" cargo_ afl build --release --features afl --locked)

# afl-fuzz itself, as cargo-afl built it (run directly: the fuzzing is not a cargo command
# and must not hold the cargo lock).
afl_fuzz="$(find "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs" -path "*$(rustc -V | awk '{print $2}')*/afl/bin/afl-fuzz" -type f 2>/dev/null | sort | tail -1)"
[ -x "$afl_fuzz" ] || { echo "afl-fuzz not found under ~/.local/share/afl.rs" >&2; exit 1; }

# Containers and shared machines: no CPU pinning, no core_pattern or governor checks.
export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_QUIET=1

status=0
summary=()
for t in "${targets[@]}"; do
  rm -rf "${out:?}/$t"
  mkdir -p "$out/$t"
  echo "fuzzing $t for ${secs}s" >&2
  "$afl_fuzz" -V "$secs" -t 2000 -i "fuzz/corpus/$t" -o "$out/$t" "$target_dir/release/$t" \
    >"$out/$t.log" 2>&1 || { echo "afl-fuzz failed for $t; see $out/$t.log" >&2; tail -20 "$out/$t.log" >&2; status=1; continue; }
  stats="$out/$t/default/fuzzer_stats"
  get() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$stats"; }
  crashes="$(get saved_crashes)"
  hangs="$(get saved_hangs)"
  summary+=("$(printf '%-12s %6ss %12s execs %8s execs/s %6s paths %8s edges %s crashes %s hangs' \
    "$t" "$(get run_time)" "$(get execs_done)" "$(get execs_per_sec)" "$(get corpus_count)" \
    "$(get bitmap_cvg)" "$crashes" "$hangs")")
  if [ "${crashes:-0}" != "0" ]; then
    echo "$t: $crashes crashing input(s) in $out/$t/default/crashes/" >&2
    status=1
  fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
