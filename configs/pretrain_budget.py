"""Budget pretraining in the Cramming / MosaicBERT manner, for the from-scratch recipe: no NSP,
30 % masking, packed 128-token sequences, a 16k WordPiece trained on the corpus, a high peak
learning rate with warm-up and linear decay to zero (`jaxbert.configs.budget_pretrain_config`).
BERT-mini size (4 layers, hidden 256), batch 64 x 128 tokens, 1,200 steps (9.8 M tokens).

    python scripts/pretrain.py --config configs/pretrain_budget.py --workdir runs/budget \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

Scale it with --config.train.num_steps (the schedule follows; `PRETRAIN_STEPS=N bash
scripts/reproduce.sh scratch WORKDIR` does it for the whole recipe); configs/pretrain_budget_gpu.py
is the same recipe at BERT-base size for one GPU. The token embeddings start from the corpus'
co-occurrence vectors (`jaxbert/word_vectors.py`, ~30 s). Expected (2-core CPU, idle,
2026-12-06): 1.86 s per step, 37 min for the 1,200 steps; held-out MLM loss 6.06 (perplexity
429; from BERT's random embeddings 6.42, 612), mean-pooled STS-B dev 68.4 (54.1); the whole
`scratch` recipe then ends at STS-B 80.30, SICK-R 77.68, SNLI 70.43 % (seed 1: 80.17, 77.50,
70.92 %; README "Results").
"""

from jaxbert.configs import budget_pretrain_config


def get_config():
    config = budget_pretrain_config()
    config.model.size = "mini"
    config.tokenizer.vocab_size = 16384
    config.tokenizer.train_documents = 5000
    config.data.val_documents = 100
    config.train.batch_size = 64
    config.train.num_steps = 1200
    config.train.log_every = 25
    config.train.eval_every = 300
    config.train.checkpoint_every = 150
    config.train.eval_batches = 10
    return config
