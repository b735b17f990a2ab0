#!/usr/bin/env bash
# Gradescope: install the kit (the instructor's copy, unzipped into /autograder/source).
# Build the autograder zip from the instructor's kit:  bash ci/gradescope/make_zip.sh
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install -e /autograder/source
