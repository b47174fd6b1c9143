#!/usr/bin/env bash
# How the shipped autocomplete models were trained: on one GPU, three runs side by side, each
# for MINUTES of wall time (its learning-rate schedule is fitted to that time), on the
# standard library plus every installed site-package except the benchmark's held-out ones
# (benchmarks/autocomplete/run.py: HELD_OUT_PACKAGES; excluded also where vendored), each
# top-level package capped at CAP_MB so the largest ones do not dominate.
#
#   bash scripts/train-autocomplete-gpu.sh OUT_DIR [MINUTES]
#
# Writes OUT_DIR/{llama-small,llama-medium,lstm-small}/ (model, tokenizer, curves,
# training.json) and OUT_DIR/*.log. Runs from a checkout with PYTHONPATH=src, so it needs no
# install beyond torch, tokenizers, safetensors, typer and rich. SIZE=tiny and DEVICE=cpu make a
# quick smoke run.
set -uo pipefail
out=${1:?usage: train-autocomplete-gpu.sh OUT_DIR [MINUTES]}
minutes=${2:-6.5}
device=${DEVICE:-cuda}
cap_mb=${CAP_MB:-2}
python=${PYTHON:-python3}
shipped=src/septet/autocomplete/default_model
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SEPTET_QUIET=1
mkdir -p "$out"
limit=$(awk -v m="$minutes" 'BEGIN { print int(m * 60 + 60) }')  # a hung run is killed

corpus=${CORPUS:-$("$python" -c 'import sysconfig; p = sysconfig.get_paths(); print(p["stdlib"], p["purelib"])')}
excludes=$("$python" -c '
import runpy
names = runpy.run_path("benchmarks/autocomplete/run.py")["HELD_OUT_PACKAGES"]
print(" ".join("--exclude " + n for n in names))')
corpus_args=""
for c in $corpus; do corpus_args+=" --corpus $c"; done
echo "corpus:$corpus_args"
echo "held out:$excludes"

common="$corpus_args $excludes --max-package-mb $cap_mb --device $device --threads 2 --max-minutes $minutes --max-steps 1000000 --eval-every ${EVAL_EVERY:-500}"
train() {  # name, then the run's own options
  local name=$1
  shift
  # shellcheck disable=SC2086  # the option strings are meant to split into words
  timeout "$limit" "$python" -m septet autocomplete train \
    --out "$out/$name" $common "$@" >"$out/$name.log" 2>&1
  echo "$name: exit $? ($(tail -c 300 "$out/$name.log" | tr '\n' ' '))"
}
if [ "${SIZE:-}" = tiny ]; then
  train llama-tiny --kind llama --size tiny --seq-len 64 --batch-size 8 --vocab-size 512 &
  wait
  exit 0
fi
train llama-small --kind llama --init-from $shipped/llama --seq-len 384 --batch-size 64 \
  --learning-rate 1e-3 &
train llama-medium --kind llama --size medium --seq-len 384 --batch-size 64 \
  --learning-rate 1.5e-3 &
train lstm-small --kind lstm --init-from $shipped/lstm --seq-len 256 --batch-size 64 \
  --learning-rate 2e-3 &
wait
