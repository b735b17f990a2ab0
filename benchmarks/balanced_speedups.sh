#!/usr/bin/env bash
# Benchmark (not a test): balanced Mandelbrot at 1 and 2 workers: the grading spec, 600x400
# and 600x400 at maxit 255, every backend, median of 5, and the master-only MPI contrast at the
# largest size. The first two sizes are in the published bench figure (docs/benchmarks.md);
# this adds maxit 255, where a row costs more and the hand-outs matter less.
# usage: benchmarks/balanced_speedups.sh [OUT]   (from the kit root, venv on, machine idle)
set -euo pipefail
out=${1:-bench-speedups}
parakit bench mandelbrot --size mandelbrot=150x100,600x400 --workers 1,2 --repeat 5 \
    --no-contrasts --out "$out/default"
parakit bench mandelbrot --size mandelbrot=600x400:255 --workers 1,2 --repeat 5 \
    --out "$out/maxit255"
