#!/usr/bin/env bash
# The README's `make demo`: a tour of mlserve in a fresh temporary project.
set -euo pipefail

work=$(mktemp -d "${TMPDIR:-/tmp}/mlserve-demo.XXXXXX")
project="$work/acme-ml"
echo "== mlserve init $project"
mlserve init "$project"
echo
echo "== mlserve validate"
mlserve --project-dir "$project" validate
echo
echo "demo project left in $project"
