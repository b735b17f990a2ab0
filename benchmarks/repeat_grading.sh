#!/usr/bin/env bash
# Flake check: grade the reference N times, optionally beside BUSY busy-loop processes, and
# print one line per run (exit code, score line, wall seconds). Further arguments go to pytest.
# usage: benchmarks/repeat_grading.sh N [BUSY [PYTEST ARGS...]]   (from the kit root, venv on)
# e.g.   benchmarks/repeat_grading.sh 50 2 -k mandelbrot_balance
set -u
runs=${1:-20}
busy=${2:-0}
shift $(( $# < 2 ? $# : 2 ))
pids=()
for _ in $(seq 1 "$busy"); do
    python -c "while True: pass" &
    pids+=($!)
done
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
for i in $(seq 1 "$runs"); do
    start=$(date +%s.%N)
    out=$(pytest grader --target reference -q -p no:cacheprovider "$@" 2>&1)
    code=$?
    end=$(date +%s.%N)
    score=$(grep -E '^total' <<<"$out" | tr -s ' ')
    printf 'run %2d busy=%d exit=%d %s %.1fs\n' "$i" "$busy" "$code" "$score" "$(echo "$end - $start" | bc)"
    if [ "$code" -ne 0 ]; then
        grep -E '^FAILED' <<<"$out"
        printf '%s\n' "$out" > "repeat-failure-$i.txt"  # the whole output, for the R values
        echo "    (full output in repeat-failure-$i.txt)"
    fi
done
