#!/usr/bin/env bash
# Pretraining throughput on a lent GPU, ours and the peers', in one device call (~8 minutes).
#   ours   scripts/benchmark.py pretrain: BERT-base and BERT-small, batch 256, seq 128, bf16,
#          XLA and cuDNN attention, MFU of 790 TFLOP/s (what the peers use); then, if time is
#          left, our SBERT fine-tuning (small, bf16, batch 64) to set beside sentence-transformers'
#   peers  ../shared/bench/device_peers.sh (HF PyTorch eager + torch.compile, HF Flax 4.57) and
#          device_st.sh (sentence-transformers fine-tuning and encode)
# JSON lines land in $OUT: ours.jsonl, torch.jsonl, flax.jsonl, st.jsonl; the full log in log.txt.
#
# Here, once (copies the peers and their data into .cache/device/ and wheels into .whl/, both
# git-ignored; about 20 MB):
#   bash scripts/device_bench.sh --prepare
# Then one device call (the tool's `run`), from the repository root:
#   command: bash scripts/device_bench.sh    carry: [".cache/device", ".whl"]    timeout_s: 560
# A CPU smoke test of our part: PYTHON=.venv/bin/python SIZES=tiny BATCH=8 SEQ=32 STEPS=2 \
#   PEERS=0 OUT=/tmp/device_out bash scripts/device_bench.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEV=$ROOT/.cache/device
WHEELS=$ROOT/.whl

if [[ ${1:-} == --prepare ]]; then
  SHARED=${SHARED:-$ROOT/../shared}
  rm -rf "$DEV" && mkdir -p "$DEV/data/snli" "$DEV/data/bert_uncased_vocab" || exit 1
  cp -r "$SHARED/bench" "$DEV/bench"
  cp "$SHARED"/data/snli/{snli_1.0_dev.csv,snli_train_subset_18k.tsv} "$DEV/data/snli/"
  cp "$SHARED/data/bert_uncased_vocab/vocab.txt" "$DEV/data/bert_uncased_vocab/"
  # transformers 4.x for the Flax peer (v5 removed Flax); ml_collections for jaxbert's configs.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d "$WHEELS" \
    transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 ml_collections==1.1.0
  du -sh "$DEV" "$WHEELS"
  exit
fi

PYTHON=${PYTHON:-python3}
SIZES=${SIZES:-base,small} BATCH=${BATCH:-256} SEQ=${SEQ:-128} STEPS=${STEPS:-30}
DEADLINE=${DEADLINE:-470}  # seconds for everything; each stage gets what is left
OUT=${OUT:-$ROOT/device_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
left() { local s=$((DEADLINE - SECONDS)); echo $((s > 5 ? s : 5)); }
ours() { timeout "$(left)" "$PYTHON" scripts/benchmark.py "$@" | grep '^{' | tee -a "$OUT/ours.jsonl"; }

nvidia-smi -L
cd "$ROOT" || exit 1
if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/jb-site \
    "$WHEELS"/ml_collections-*.whl
fi
export PYTHONPATH=/tmp/jb-site:$ROOT

echo "== ours: pretrain ($SECONDS s)"
ours pretrain --size "$SIZES" --batch "$BATCH" --seq "$SEQ" --dtype bfloat16 \
  --attention xla,cudnn --warmup 5 --steps "$STEPS" --peak-tflops 790
if [[ ${PEERS:-1} == 1 ]]; then
  echo "== peers: device_peers.sh ($SECONDS s)"
  (cd "$DEV/bench" && WHEELS=$WHEELS OUT=$OUT timeout "$(left)" bash device_peers.sh)
  echo "== peers: device_st.sh ($SECONDS s)"
  (cd "$DEV/bench" && OUT=$OUT timeout "$(left)" bash device_st.sh)
fi
if ((DEADLINE - SECONDS > 60)); then
  echo "== ours: SBERT fine-tuning ($SECONDS s)"
  ours finetune --model small --vocab "$DEV/data/bert_uncased_vocab/vocab.txt" \
    --data-root "$DEV/data" --batch 64 --dtype bfloat16 --buckets 16,32,64,128 --max-len 128 \
    --steps 100
fi
echo "== done in $SECONDS s"
