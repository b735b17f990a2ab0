#!/usr/bin/env bash
# Benchmark (not a test): balanced Mandelbrot at 1 and 2 workers, the figures of
# docs/benchmarks.md ("Feedback times"): the grading spec, 600x400 and 600x400 at maxit 255,
# every backend, median of 5, and the master-only MPI contrast at the largest size.
# usage: benchmarks/balanced_speedups.sh [OUT]   (from the kit root, venv on, machine idle)
set -euo pipefail
out=${1:-bench-speedups}
parakit bench mandelbrot --size mandelbrot=150x100,600x400 --workers 1,2 --repeat 5 \
    --no-contrasts --out "$out/default"
parakit bench mandelbrot --size mandelbrot=600x400:255 --workers 1,2 --repeat 5 \
    --out "$out/maxit255"
