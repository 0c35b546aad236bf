#!/usr/bin/env bash
# The fuzz step (docs/TESTING.md, "Fuzzing"): builds every target once, then runs each one
# over its seeds and regression inputs and fuzzes it for a few seconds. Fails if any target
# crashes, hangs, or makes an allocation above the cap; the input that did it is printed
# (hex) and kept in fuzz/artifacts/.
#
# Environment:
#   FUZZ_SECONDS  fuzzing time per target (default 10; long runs: 300 or more)
#   FUZZ_TARGETS  space-separated subset of targets (default: all of `cargo fuzz list`)
#   FUZZ_CORPUS   directory to keep what the fuzzer finds, one subdirectory per target
#                 (default: a scratch directory removed at exit; the seeds are never written)
#
# cargo fuzz needs unstable rustc flags (sanitizer coverage); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them, for this build only.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# No sanitizer: the code under test is safe Rust (plus C libraries that ASan would not
# instrument anyway), and huge allocations are caught by mailvault_fuzz::CappedAllocator.
# Build and run must use the same flags, or `cargo fuzz run` rebuilds.
BUILD_FLAGS=(-O --sanitizer none --codegen-units 16)

seconds=${FUZZ_SECONDS:-10}
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

start=$(date +%s)
cargo fuzz build "${BUILD_FLAGS[@]}"
echo "fuzz: targets built in $(($(date +%s) - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
corpus_root=${FUZZ_CORPUS:-$scratch/corpus}
mkdir -p artifacts "$scratch/artifacts"

# Per-target libFuzzer options. -max_len bounds what one input may be (mail is large,
# command lines are not); -timeout turns a slow input into a failure (super-linear work
# on attacker input is a defect); the session targets have their own 20 s deadline inside.
options() {
    local common=(-rss_limit_mb=2048 -print_final_stats=1)
    case "$1" in
        imap_session | smtp_session) echo "${common[@]}" -max_len=4096 -timeout=30 ;;
        mime_structure | record_decode) echo "${common[@]}" -max_len=65536 -timeout=10 ;;
        query_parser) echo "${common[@]}" -max_len=8192 -timeout=10 ;;
        sequence_set) echo "${common[@]}" -max_len=4096 -timeout=10 ;;
        list_pattern) echo "${common[@]}" -max_len=1024 -timeout=10 ;;
        *) echo "${common[@]}" -timeout=10 ;;
    esac
}

failed=()
known=()
for target in $targets; do
    mkdir -p "$corpus_root/$target"
    dirs=("$corpus_root/$target" "corpus/$target")
    if [ -d "regressions/$target" ]; then
        dirs+=("regressions/$target")
    fi
    echo "fuzz: $target for ${seconds} s"
    # shellcheck disable=SC2046 # options are words
    if ! cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "${dirs[@]}" -- \
        $(options "$target") -max_total_time="$seconds" \
        -artifact_prefix="$scratch/artifacts/$target-" 2>"$scratch/$target.log"; then
        if compgen -G "known-defects/$target/*" >/dev/null; then
            known+=("$target")
            echo "fuzz: $target: a finding, and known-defects/$target/ holds an unfixed one (docs/TESTING.md):"
        else
            failed+=("$target")
        fi
        tail -n 60 "$scratch/$target.log"
        for a in "$scratch/artifacts/$target"-*; do
            [ -f "$a" ] || continue
            cp "$a" artifacts/
            echo "fuzz: $target: fuzz/artifacts/$(basename "$a") ($(wc -c <"$a") bytes):"
            od -A d -t x1z -v "$a" | head -n 64
        done
    else
        grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs" "$scratch/$target.log" | tail -n 2 || true
    fi
done

if [ ${#known[@]} -gt 0 ]; then
    echo "fuzz: findings in targets with unfixed known defects (not failing): ${known[*]}"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/; docs/TESTING.md says how to reproduce)"
    exit 1
fi
echo "fuzz: every target ran ${seconds} s; no new finding"
