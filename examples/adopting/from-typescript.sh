#!/bin/sh
# examples/adopting/from-typescript.sh
set -eu
# The TypeScript tool's database: runce reads its runce.applied collection as it is.
export RUNCE_STORE_URL="$MONGODB_URL"
runce status          # the tool's tasks: APPLIED, "checksum written by another tool"
runce run             # runs only the tasks the tool never ran
runce baseline --all  # records runce's own checksum for the adopted tasks
