#!/usr/bin/env bash
# Ours and the peers, side by side in one device call on a lent GPU (about 6 minutes).
# Stages run in order of what the performance targets need, each capped by what is left of
# DEADLINE seconds, so a slow or failing stage costs its own numbers only:
#   1 ours  BERT-base pretraining step, batch 256, seq 128, bf16, cuDNN attention
#   2 peer  HF BertForPreTraining + torch.compile, base          (../shared/bench)
#   3 ours  SBERT fine-tuning (small, bf16, batch 64, SNLI subset)  4 peer  sentence-transformers
#   5 ours  BERT-small                                              6 peer  torch.compile, small
#   7 ours  BERT-base again, 3 steps profiled (top kernels, time by kind of op)
#   8 then, while time is left: ours base with XLA attention, the torch eager and HF Flax peers,
#     SBERT fine-tuning at base, ours and sentence-transformers'
# JSON lines land in $OUT/ours.jsonl and $OUT/peers.jsonl, the log in $OUT/log.txt, and the
# last thing printed is `scripts/benchmark.py report` over both (markdown tables).
#
# Here, once (copies the peers and their data into .cache/device/ and wheels into .whl/, both
# git-ignored; about 25 MB):
#   bash scripts/device_bench.sh --prepare
# Then one device call (the tool's `run`), from the repository root:
#   command: bash scripts/device_bench.sh    carry: [".cache/device", ".whl"]    timeout_s: 470
# A CPU smoke test of the whole script (tiny shapes, the peers included):
#   PYTHON=.venv/bin/python SMOKE=1 OUT=/tmp/device_out bash scripts/device_bench.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEV=$ROOT/.cache/device
WHEELS=$ROOT/.whl

if [[ ${1:-} == --prepare ]]; then
  SHARED=${SHARED:-$ROOT/../shared}
  rm -rf "$DEV" "$WHEELS" && mkdir -p "$DEV/data/snli" "$DEV/data/bert_uncased_vocab" || exit 1
  cp -r "$SHARED/bench" "$DEV/bench"
  cp "$SHARED"/data/snli/{snli_1.0_dev.csv,snli_train_subset_18k.tsv} "$DEV/data/snli/"
  cp "$SHARED/data/bert_uncased_vocab/vocab.txt" "$DEV/data/bert_uncased_vocab/"
  download() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux2014_x86_64 -d "$1" "${@:2}"
  }
  # transformers 4.x for the Flax peer (v5 removed Flax); ml_collections for jaxbert's configs.
  download "$WHEELS" transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 \
    ml_collections==1.1.0
  # The versions jaxbert is tested with, installed only if the machine's own fail to import it.
  download "$WHEELS/fallback" flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8
  du -sh "$DEV" "$WHEELS"
  exit
fi

PYTHON=${PYTHON:-python3}
# Absolute, since the peers run from their own folder (a venv's python keeps its path).
[[ $PYTHON == */* ]] && PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
OUT=${OUT:-$ROOT/device_out}
DEADLINE=${DEADLINE:-440}  # seconds for everything
if [[ ${SMOKE:-0} == 1 ]]; then  # CPU check of every stage at toy sizes
  BASE=tiny SMALL=mini BATCH=8 SEQ=32 STEPS=2 WARMUP=1 FT_STEPS=3
else
  BASE=base SMALL=small BATCH=256 SEQ=128 STEPS=30 WARMUP=5 FT_STEPS=100
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
cd "$ROOT" || exit 1

left() { echo $((DEADLINE - SECONDS)); }
# stage CAP NAME CMD...: runs CMD with a timeout of min(CAP, time left), JSON lines to $JSONL.
stage() {
  local cap=$1 name=$2 budget
  shift 2
  budget=$(left)
  ((budget < cap)) || budget=$cap
  if ((budget < 20)); then
    echo "== skip $name (${SECONDS}s, too little time left)"
    return
  fi
  echo "== $name (${SECONDS}s, up to ${budget}s)"
  timeout "$budget" "$@" 2>&1 | tee -a "$OUT/stage.log" | grep '^{' | tee -a "$JSONL"
  echo "   rc=${PIPESTATUS[0]}"
}
ours() { JSONL=$OUT/ours.jsonl stage "$@"; }
peer() { JSONL=$OUT/peers.jsonl stage "$@"; }
BENCH=("$PYTHON" scripts/benchmark.py)
IN_PEERS=(env -C "$DEV/bench" PYTHONPATH= "$PYTHON")  # the peers run from their own folder
TORCH_PEER=("${IN_PEERS[@]}" peer_torch_bert.py --batch "$BATCH" --seq "$SEQ" --steps "$STEPS")
ST_PEER=("${IN_PEERS[@]}" peer_st.py finetune --batch 64 --steps "$FT_STEPS"
  --vocab ../data/bert_uncased_vocab/vocab.txt --data ../data/snli/snli_train_subset_18k.tsv)

nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
export PYTHONPATH=/tmp/jb-site:$ROOT
"$PYTHON" -c "import ml_collections" 2>/dev/null ||
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/jb-site \
    "$WHEELS"/ml_collections-*.whl
if ! "$PYTHON" -c "import benchmarks.pretrain" 2>/dev/null; then
  "$PYTHON" -c "import benchmarks.pretrain" 2>&1 | tail -3
  echo "jaxbert does not import with this machine's packages; installing the tested versions"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/jb-site \
    "$WHEELS"/fallback/*.whl
fi
"$PYTHON" - <<'PY'
from importlib import metadata

names = "jax jaxlib flax optax orbax-checkpoint torch transformers sentence-transformers"
versions = {}
for name in names.split():
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
print(versions)
PY

PRETRAIN=("${BENCH[@]}" pretrain --batch "$BATCH" --seq "$SEQ" --dtype bfloat16
  --warmup "$WARMUP" --steps "$STEPS" --peak-tflops 790)
FINETUNE=("${BENCH[@]}" finetune --vocab "$DEV/data/bert_uncased_vocab/vocab.txt"
  --data-root "$DEV/data" --batch 64 --dtype bfloat16 --attention cudnn --buckets 16,32,64,128
  --max-len 128 --steps "$FT_STEPS")
ours 130 "ours $BASE" "${PRETRAIN[@]}" --size "$BASE" --attention cudnn
peer 110 "torch.compile $BASE" "${TORCH_PEER[@]}" --preset "$BASE" --modes compile
ours 90 "ours SBERT fine-tuning $SMALL" "${FINETUNE[@]}" --model "$SMALL"
peer 70 "sentence-transformers fine-tuning $SMALL" "${ST_PEER[@]}" --preset "$SMALL"
ours 70 "ours $SMALL" "${PRETRAIN[@]}" --size "$SMALL" --attention cudnn
peer 70 "torch.compile $SMALL" "${TORCH_PEER[@]}" --preset "$SMALL" --modes compile
ours 90 "ours $BASE, profiled" "${PRETRAIN[@]}" --size "$BASE" --attention cudnn \
  --profile /tmp/jaxbert-profile
# Extras, while time is left.
ours 70 "ours $BASE, XLA attention" "${PRETRAIN[@]}" --size "$BASE" --attention xla
peer 60 "torch eager $BASE" "${TORCH_PEER[@]}" --preset "$BASE" --modes eager
ours 80 "ours SBERT fine-tuning $BASE" "${FINETUNE[@]}" --model "$BASE"
peer 80 "sentence-transformers fine-tuning $BASE" "${ST_PEER[@]}" --preset "$BASE"
rm -rf /tmp/peer-site
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/peer-site \
  "$WHEELS"/*.whl
peer 90 "HF Flax $BASE" env -C "$DEV/bench" PYTHONPATH=/tmp/peer-site "$PYTHON" \
  peer_flax_bert.py --preset "$BASE" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS"
echo "== done in ${SECONDS}s"
"${BENCH[@]}" report "$OUT/ours.jsonl" "$OUT/peers.jsonl"
