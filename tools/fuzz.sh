#!/usr/bin/env bash
# Fuzzes the symbolizer (symbolizer/fuzz, target symbolize_dump: Crash::from_bytes, then the
# text and JSON renderers; and `crashcatch core`'s Core::from_dump) with libFuzzer through
# cargo-fuzz.
#
#   bash tools/fuzz.sh CORPUS_DIR [SECONDS] [libFuzzer options...]
#
# Installs cargo-fuzz into ~/.cargo/bin if it is missing, builds the target (in its own target
# dir, symbolizer/fuzz/target/<sanitizer>; a cold build takes 2-3 minutes), then runs libFuzzer
# on CORPUS_DIR (new inputs are added to it) for SECONDS (default 60). Exits non-zero when
# libFuzzer finds a crash (a panic, an overflow, a hang past -timeout=10, more than
# -rss_limit_mb=2048, a sanitizer error); the input is left under symbolizer/fuzz/artifacts/
# and its path printed last. Make a seed corpus with `tests/test_fuzz_target.py CORPUS_DIR`.
#
# The build has cargo-fuzz's default debug assertions and overflow checks, and no sanitizer:
# the code is safe Rust but for mapping module files, what the fuzzer looks for (panics,
# overflows, hangs, memory blow-ups) needs none, and AddressSanitizer more than halves the
# runs per second. CRASHCATCH_FUZZ_SANITIZER=address adds it (with libFuzzer's malloc limit
# and leak checks; -Zsanitizer, which the stable toolchain accepts under RUSTC_BOOTSTRAP=1).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_DIR="$REPO/symbolizer/fuzz"
TARGET=symbolize_dump

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
CORPUS=$1
shift
DURATION=60
if [ $# -ge 1 ]; then
    DURATION=$1
    shift
fi
mkdir -p "$CORPUS"

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz into ~/.cargo/bin"
    cargo install cargo-fuzz --locked
fi

SANITIZER=${CRASHCATCH_FUZZ_SANITIZER:-none}
[ "$SANITIZER" = none ] || export RUSTC_BOOTSTRAP=1
# One target dir per sanitizer: switching does not rebuild everything.
TARGET_DIR="$FUZZ_DIR/target/$SANITIZER"
echo "==> building $TARGET ($(cargo fuzz --version), sanitizer: $SANITIZER)"
(cd "$FUZZ_DIR" && cargo fuzz build --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" "$TARGET")
BIN="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release/$TARGET"

ARTIFACTS="$FUZZ_DIR/artifacts/$TARGET/"
mkdir -p "$ARTIFACTS"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# The symbolizer must never reach the network while fuzzing (debuginfod).
unset DEBUGINFOD_URLS
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

echo "==> fuzzing $TARGET for ${DURATION}s on $CORPUS"
set +e
"$BIN" "$CORPUS" -max_total_time="$DURATION" -timeout=10 -rss_limit_mb=2048 \
    -dict="$FUZZ_DIR/$TARGET.dict" -artifact_prefix="$ARTIFACTS" -print_final_stats=1 "$@" 2>&1 \
    | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

if [ "$status" -ne 0 ]; then
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOG" | tail -1)
    echo "fuzz.sh: libFuzzer found a problem (exit status $status)"
    if [ -n "$artifact" ]; then
        echo "fuzz.sh: reproduce with: $BIN $artifact"
        echo "fuzz.sh: crash artifact: $artifact"
    fi
    exit "$status"
fi
echo "fuzz.sh: no crash in ${DURATION}s"
