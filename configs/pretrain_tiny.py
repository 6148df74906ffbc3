"""Tiny BERT (2 layers, hidden 128) pretrained for a minute on CPU: a smoke run of the pipeline.

    python scripts/pretrain.py --config configs/pretrain_tiny.py --workdir runs/pretrain_tiny
    # on other text instead of the sample shipped in the package:
    python scripts/pretrain.py --config configs/pretrain_tiny.py --workdir runs/pretrain_tiny \
        --config.data.train_files='../shared/data/pretrain_text/enwiki2015_AA.jsonl.gz'

The corpus is the package's own sample (`jaxbert.sample_data.CORPUS`: 1,766 documents from US
State of the Union addresses, public domain), so it runs offline on a fresh machine.
Expected (2-core CPU, measured 2026-12-05 under load): 71 s of CPU time for the whole command
(tokenizer training + corpus cache ~3 s, then 300 steps), about a minute on idle cores; final
eval MLM accuracy ~9 %, perplexity ~610, NSP accuracy ~57 %. A smoke run of the pipeline, not
a useful encoder.
"""

from jaxbert import sample_data
from jaxbert.configs import pretrain_config


def get_config():
    config = pretrain_config()
    config.model.size = "tiny"
    config.tokenizer.vocab_size = 8192
    config.tokenizer.train_documents = 0  # all of the sample
    config.data.train_files = sample_data.CORPUS
    config.data.max_documents = 0
    config.data.val_documents = 50
    config.data.max_len = 64
    config.data.max_predictions = 10
    config.optim.lr = 1e-3
    config.train.batch_size = 32
    config.train.num_steps = 300
    config.train.log_every = 20
    config.train.eval_every = 100
    config.train.checkpoint_every = 100
    config.train.eval_batches = 5
    return config
