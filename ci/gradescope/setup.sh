#!/usr/bin/env bash
# Gradescope: install the kit (the instructor's copy, unzipped into /autograder/source).
# Build the autograder zip from the instructor's kit:  bash ci/gradescope/make_zip.sh
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip bubblewrap
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install -e /autograder/source
# Graded code runs as this user (run_autograder passes --run-as): it can read and run the kit
# and the venv, but not read the hidden tests nor write the results (run_autograder locks them).
id parakit-student >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin \
    --user-group parakit-student
chmod -R a+rX,go-w /autograder/source /autograder/venv
