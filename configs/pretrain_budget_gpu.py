"""The from-scratch recipe's budget pretraining scaled up for one GPU: BERT-base (12 layers,
hidden 768) in bfloat16 with cuDNN attention, a 32k WordPiece (Cramming's size), batch 512 x 128
tokens, 20,000 steps (1.3 B tokens), peak lr 5e-4 (half the CPU recipe's: a post-LN BERT-base
is less stable at 1e-3), the rest as `jaxbert.configs.budget_pretrain_config`.

    PRETRAIN_CONFIG=configs/pretrain_budget_gpu.py bash scripts/reproduce.sh scratch runs/gpu
    python scripts/pretrain.py --config configs/pretrain_budget_gpu.py --workdir runs/budget_gpu \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

The fine-tuning stages after it (MNR, CoSENT, NLI head) take the model's size from the
checkpoint and run as on CPU, in minutes. Expected: not run yet (no GPU was lent since it was
written). At the last measured BERT-base step rate (4,726 sequences/s, one H200, README
"Performance" / "GPU") its 10.2 M sequences take about 36 minutes; halve --config.train.num_steps
for a smaller budget (the schedule follows). The Wikipedia text in ../shared/data is 69 M tokens,
so this budget sees it about 19 times; give it a larger corpus (--config.data.name) where you can.
Its token embeddings start from the corpus' co-occurrence vectors as on CPU (counted over the
first 100 M tokens; a minute or two of CPU before the first step, not yet measured at 32k x 768);
--config.model.embedding_init=normal starts them as BERT does.
"""

from jaxbert.configs import budget_pretrain_config


def get_config():
    config = budget_pretrain_config()
    config.model.size = "base"
    config.model.dtype = "bfloat16"
    config.model.attention_impl = "cudnn"
    config.tokenizer.vocab_size = 32768
    config.data.val_documents = 200
    config.optim.lr = 5e-4
    config.train.batch_size = 512
    config.train.num_steps = 20_000
    config.train.log_every = 100
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    config.train.eval_batches = 20
    return config
