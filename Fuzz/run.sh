#!/usr/bin/env bash
# Builds the SquisherCheckpoints fuzzer outside SwiftPM and runs it on the seed corpus.
#   Fuzz/run.sh [seconds=120] [extra libFuzzer flags...]
# Needs a Swift toolchain with libFuzzer (the swift.org Linux toolchains have it).
# The build is one module: SquisherTensor + SquisherIO's file checks + SquisherCheckpoints + the driver, with the inter-module
# imports stripped. New inputs go to .build/fuzz/corpus (not to the repository); crashes to .build/fuzz/crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-120}"
shift || true
OUT=.build/fuzz
SRC="$OUT/src"
rm -rf "$SRC"
mkdir -p "$SRC" "$OUT/corpus" "$OUT/crashes"
for file in Sources/SquisherTensor/*.swift Sources/SquisherIO/FileAccessError.swift Sources/SquisherIO/InputFile.swift Sources/SquisherCheckpoints/*.swift; do
    name="$(basename "$(dirname "$file")")_$(basename "$file")"
    sed -E '/^(@_exported )?import (SquisherTensor|SquisherIO|CSquisherKernels)$/d' "$file" > "$SRC/$name"
done
EXTRA=()
if grep -qs "^import CSquisherKernels" Sources/SquisherTensor/*.swift; then
    # SquisherTensor calls the C kernels: compile them with the same sanitizers and import the header.
    clang -O1 -fsanitize=fuzzer-no-link,address -c Sources/CSquisherKernels/*.c -I Sources/CSquisherKernels/include -o "$OUT/kernels.o"
    EXTRA+=(-import-objc-header Sources/CSquisherKernels/include/CSquisherKernels.h "$OUT/kernels.o")
fi
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name CheckpointFuzz \
    Fuzz/CheckpointFuzzer/main.swift "$SRC"/*.swift "${EXTRA[@]}" -o "$OUT/checkpoint-fuzzer"
echo "built $OUT/checkpoint-fuzzer; fuzzing for ${SECONDS_TO_RUN}s"
"$OUT/checkpoint-fuzzer" "$OUT/corpus" Fuzz/corpus \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$OUT/crashes/" -print_final_stats=1 "$@"
