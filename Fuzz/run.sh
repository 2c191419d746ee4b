#!/usr/bin/env bash
# Builds the SquisherCheckpoints fuzzer outside SwiftPM and runs one parser on its seed corpus.
#   Fuzz/run.sh [seconds=120] [target=torch] [extra libFuzzer flags...]
# Targets: torch (zip container + restricted unpickler), deepspeed-model, deepspeed-optim,
# dcp-metadata, bnb, adafactor, hf-config (see Fuzz/README.md). FUZZ_SKIP_BUILD=1 reuses the last
# build (to run two targets at once without both rebuilding).
# Needs a Swift toolchain with libFuzzer (the swift.org Linux toolchains have it).
# The build is one module: SquisherTensor + SquisherIO + SquisherCheckpoints + the shared fuzz targets of the
# replay test + the driver, with the inter-module imports stripped. New inputs go to
# .build/fuzz/corpus/<target> (not to the repository); crashes to .build/fuzz/crashes/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-120}"
shift || true
TARGET=torch
if [[ $# -gt 0 && "$1" != -* ]]; then TARGET="$1"; shift; fi
[[ -d "Fuzz/corpus/$TARGET" ]] || { echo "unknown target '$TARGET': no Fuzz/corpus/$TARGET" >&2; exit 2; }
OUT=.build/fuzz
SRC="$OUT/src"
if [[ "${FUZZ_SKIP_BUILD:-0}" != 1 || ! -x "$OUT/checkpoint-fuzzer" ]]; then
    rm -rf "$SRC"
    mkdir -p "$SRC"
    for file in Sources/SquisherTensor/*.swift Sources/SquisherIO/*.swift Sources/SquisherCheckpoints/*.swift Tests/SquisherCheckpointsTests/Fuzzing/*.swift; do
        name="$(basename "$(dirname "$file")")_$(basename "$file")"
        sed -E '/^(@_exported )?import (SquisherTensor|SquisherIO|SquisherCheckpoints|CSquisherKernels)$/d' "$file" > "$SRC/$name"
    done
    EXTRA=()
    if grep -qs "^import CSquisherKernels" Sources/SquisherTensor/*.swift; then
        # SquisherTensor calls the C kernels: compile them with the same sanitizers and import the header.
        EXTRA+=(-import-objc-header Sources/CSquisherKernels/include/CSquisherKernels.h)
        for kernel in Sources/CSquisherKernels/*.c; do
            object="$OUT/$(basename "$kernel" .c).o"
            clang -O1 -fsanitize=fuzzer-no-link,address -c "$kernel" -I Sources/CSquisherKernels/include -o "$object"
            EXTRA+=("$object")
        done
    fi
    swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name CheckpointFuzz \
        Fuzz/CheckpointFuzzer/main.swift "$SRC"/*.swift "${EXTRA[@]}" -o "$OUT/checkpoint-fuzzer"
    echo "built $OUT/checkpoint-fuzzer"
fi
mkdir -p "$OUT/corpus/$TARGET" "$OUT/crashes/$TARGET"
MAX_LEN=65536
[[ "$TARGET" == dcp-metadata ]] && MAX_LEN=131072  # the fixture's .metadata is 87 KB
echo "fuzzing $TARGET for ${SECONDS_TO_RUN}s"
SQUISHER_FUZZ_TARGET="$TARGET" SQUISHER_FUZZ_FORMATS="$PWD/Tests/SquisherCheckpointsTests/Resources/formats" \
"$OUT/checkpoint-fuzzer" "$OUT/corpus/$TARGET" "Fuzz/corpus/$TARGET" \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len="$MAX_LEN" \
    -artifact_prefix="$OUT/crashes/$TARGET/" -print_final_stats=1 "$@"
