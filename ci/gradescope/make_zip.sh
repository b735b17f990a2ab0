#!/usr/bin/env bash
# Build autograder.zip for Gradescope from the instructor's kit (run from anywhere).
set -euo pipefail
kit="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$kit/autograder.zip}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$kit/ci/gradescope/setup.sh" "$kit/ci/gradescope/run_autograder" "$stage/"
(cd "$kit" && git ls-files -co --exclude-standard problems student reference grader hidden conftest.py \
    pyproject.toml README.md docs | tar -cf - -T -) | tar -xf - -C "$stage"
rm -f "$out" && (cd "$stage" && python3 -m zipfile -c "$out" .)
echo "wrote $out"
