#!/bin/bash
# t/fuzz/run-libfuzzer.sh SECONDS
#
# libFuzzer (clang-14) on every t/fuzz/fuzz_<unit>.c, SECONDS each, one
# after the other.  Each target is built with ASan and UBSan
# (-fno-sanitize-recover) into build/libfuzzer/fuzz_<unit>, seeded with the
# checked-in corpus t/fuzz/corpus/<unit>/, which is only read: new inputs go
# to the scratch corpus build/libfuzzer/corpus-<unit>/, kept between runs.
# Crash, leak, timeout and OOM inputs are written under
# build/libfuzzer/artifacts/<unit>/ and named in the output.
#
# Prints one summary line per target (runs, coverage, new inputs, result)
# and exits non-zero when a target failed to build or found a problem.
#
# To reproduce a crash:  build/libfuzzer/fuzz_<unit> CRASH-FILE
# Or with gcc and the replayer: make fuzz-replay; build/fuzz/fuzz_<unit> FILE

set -euo pipefail

say() { printf 'run-libfuzzer: %s\n' "$*"; }
die() { printf 'run-libfuzzer: error: %s\n' "$*" >&2; exit 2; }

[ $# -eq 1 ] && [[ $1 =~ ^[1-9][0-9]*$ ]] || die "usage: $0 SECONDS"
secs=$1

top=$(cd "$(dirname "$0")/../.." && pwd)
out="$top/build/libfuzzer"
cc=clang-14

cd "$top"


# ---- clang-14 and libFuzzer ------------------------------------------------

missing=
for p in clang-14 libclang-rt-14-dev libcjson-dev libssl-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
        | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    say "installing:$missing"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
        --no-install-recommends $missing
fi

shopt -s nullglob
targets=(t/fuzz/fuzz_*.c)
core=(src/*.c)
[ ${#targets[@]} -gt 0 ] || die "no t/fuzz/fuzz_*.c"

mkdir -p "$out"

# Leaks are bugs in the core (it frees on every path), so LeakSanitizer
# stays on; UBSan aborts on the first report (-fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

summary=()
failed=0


# ---- build, run, summarize each target ----------------------------------

for src in "${targets[@]}"; do
    name=$(basename "$src" .c)
    unit=${name#fuzz_}
    bin="$out/$name"
    log="$out/$name.log"
    seed="t/fuzz/corpus/$unit"
    scratch="$out/corpus-$unit"
    arts="$out/artifacts/$unit"

    say "building $bin"
    if ! $cc -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 \
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
            -Isrc -o "$bin" "$src" "${core[@]}" -lcjson -lcrypto \
            > "$log" 2>&1
    then
        cat "$log"
        summary+=("$(printf '%-8s BUILD FAILED (log: %s)' "$unit" "$log")")
        failed=1
        continue
    fi

    mkdir -p "$scratch" "$arts"
    dirs=("$scratch")
    if [ -d "$seed" ]; then
        dirs+=("$seed")
    else
        say "warning: no seed corpus $seed"
    fi

    # The first corpus dir is the one libFuzzer writes to: the scratch one.
    say "running $name for ${secs}s (seed: $seed, scratch: $scratch)"
    rc=0
    "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=25 \
        -artifact_prefix="$arts/" "${dirs[@]}" > "$log" 2>&1 || rc=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" \
           | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    corp=$(sed -n 's|.* corp: \([0-9]*/[0-9A-Za-z]*\).*|\1|p' <<< "$last")
    new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)

    if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
        result=ok
    else
        failed=1
        result="FAILED (exit $rc)"
        # the sanitizer's or libFuzzer's own words, then the input
        grep -E 'ERROR: |runtime error:|SUMMARY: |deadly signal' "$log" \
            | head -5 | sed 's/^/    /' || true
        if [ -n "$crash" ]; then
            result="$result crash file: $crash"
        fi
        result="$result log: $log"
    fi

    fmt='%-8s runs %-9s cov %-5s ft %-6s corpus %-12s new %-5s %s'
    summary+=("$(printf "$fmt" "$unit" "${runs:-?}" "${cov:-?}" \
        "${ft:-?}" "${corp:-?}" "${new:-?}" "$result")")
done


say "summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"

if [ "$failed" -ne 0 ]; then
    say "FAILED: see the crash files and logs above"
    exit 1
fi
say "all targets ok"
