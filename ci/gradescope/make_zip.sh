#!/usr/bin/env bash
# Build autograder.zip for Gradescope from the instructor's kit (run from anywhere).
# The zip holds the grader and the hidden tests, never reference/ (grading does not need it) nor
# the kit's tests: parakit/bundle.py leaves them out and fixes pyproject.toml's package list.
# The hidden tests are kept from graded code on Gradescope by run_autograder (--run-as).
set -euo pipefail
kit="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(realpath -m "${1:-$kit/autograder.zip}")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$kit/ci/gradescope/setup.sh" "$kit/ci/gradescope/run_autograder" "$stage/"
(cd "$kit" && git ls-files -co --exclude-standard problems student grader parakit hidden conftest.py \
    pyproject.toml README.md docs | tar -cf - -T -) | tar -xf - -C "$stage"
python3 "$kit/parakit/bundle.py" "$stage" >/dev/null
if [ -e "$stage/reference" ]; then echo "make_zip.sh: reference/ must not be in the zip" >&2; exit 1; fi
rm -f "$out" && (cd "$stage" && python3 -m zipfile -c "$out" .)
echo "wrote $out"
