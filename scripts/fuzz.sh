#!/usr/bin/env bash
# make fuzz: build every cargo-fuzz target with the nightly toolchain, run
# each for FUZZ_SECS seconds (FUZZ_JOBS at a time), then minimize every crash
# or slow input libFuzzer saved into fuzz/regressions/<target>/, the corpus
# that `make test` replays on stable (tests/fuzz_replay.rs of mailserver and
# labdns). docs/fuzzing.md explains the targets and the workflow.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECS="${FUZZ_SECS:-600}"
FUZZ_JOBS="${FUZZ_JOBS:-1}"
FUZZ_TARGETS="${FUZZ_TARGETS:-smtp imap_pre imap_post pop3 message zip dns}"
# No sanitizer: the server crates forbid unsafe code, and yara-x's JIT does
# not run under ASan. A panic, a stack overflow, an abort or an input slower
# than 1 s (the harness's bound; -timeout is the backstop) is a finding.
FLAGS=(-s none --release)
LOGS="${FUZZ_LOGS:-target/fuzz-logs}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build "${FLAGS[@]}"
mkdir -p "$LOGS"

dict_of() {
    case "$1" in
        smtp) echo dicts/smtp.dict ;;
        imap_*) echo dicts/imap.dict ;;
        pop3) echo dicts/pop3.dict ;;
        message) echo dicts/message.dict ;;
        zip) echo dicts/zip.dict ;;
        *) echo "" ;;
    esac
}

run_one() {
    local t="$1" dict
    dict="$(dict_of "$t")"
    mkdir -p "corpus/$t" "artifacts/$t"
    local args=(-max_total_time="$FUZZ_SECS" -timeout=3 -max_len=65536 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="artifacts/$t/")
    [ -n "$dict" ] && args+=(-dict="$dict")
    cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "seeds/$t" -- "${args[@]}" \
        >"$LOGS/$t.log" 2>&1 || true
    local execs
    execs="$(grep -m1 'stat::number_of_executed_units' "$LOGS/$t.log" | awk '{print $2}' || true)"
    echo "$t: ${execs:-?} executions in ${FUZZ_SECS} s (log $PWD/$LOGS/$t.log)"
}

running=0
for t in $FUZZ_TARGETS; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$FUZZ_JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

# Every finding, minimized, into the regression corpus.
found=0
for t in $FUZZ_TARGETS; do
    for a in artifacts/"$t"/crash-* artifacts/"$t"/timeout-* artifacts/"$t"/oom-*; do
        [ -e "$a" ] || continue
        found=$((found + 1))
        mkdir -p "regressions/$t"
        out="regressions/$t/$(basename "$a")"
        cargo +nightly fuzz tmin "${FLAGS[@]}" "$t" "$a" -- -runs=2000 -timeout=3 \
            >"$LOGS/$t.tmin.log" 2>&1 || true
        min="$(ls -t artifacts/"$t"/minimized-from-* 2>/dev/null | head -1 || true)"
        if [ -n "$min" ]; then mv "$min" "$out"; else cp "$a" "$out"; fi
        rm -f "$a"
        echo "finding: $out"
    done
done
echo "$found finding(s); each is in fuzz/regressions/<target>/ and replayed by make test"
