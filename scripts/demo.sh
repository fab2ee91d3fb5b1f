#!/usr/bin/env bash
# `make demo`: the whole pipeline on a CPU-sized synthetic OL3I cohort.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-demo-out}
export AMFMEDIT_DATA="$OUT/data" AMFMEDIT_RUNS="$OUT/runs"
"$BIN/amfmedit" info
"$BIN/amfmedit" prepare --data synthetic-ol3i --patients 800 --image-size 64 --features 64 --prevalence 0.15 --force
