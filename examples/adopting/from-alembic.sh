#!/bin/sh
# examples/adopting/from-alembic.sh
set -eu
# tasks/ holds one task per data migration, named by the day it was written; those up to
# the last one Alembic (or Django) applied are done: record them without running them.
runce baseline --all --until 2025-06-30
runce run  # only the tasks after that day run
