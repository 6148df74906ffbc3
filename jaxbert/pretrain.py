"""MLM + NSP pretraining: tokenizer, cached corpus, model, loss and evaluation for `train.run`."""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbert import checkpoint, configs, losses, train, word_vectors
from jaxbert.data import sources
from jaxbert.data.corpus import TokenizedCorpus, prepare_corpus
from jaxbert.data.masking import MaskingConfig
from jaxbert.data.pretraining import PretrainingBatches
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig, BertForPreTraining

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
# How a fresh run's token embeddings start: BERT's normal(0, 0.02), or co-occurrence vectors of
# the training corpus (`with_cooccurrence_embeddings`).
EMBEDDING_INITS = ("normal", "cooccurrence")


def documents_factory(data_config):
    """A zero-argument callable that streams the corpus' documents from the start, and the
    corpus' cache key (the source settings, plus each local file's size and modification time
    so an edited file is tokenized again)."""
    spec = dict(
        name="" if data_config.train_files else data_config.name,
        files=data_config.train_files,
        text_field=data_config.text_field,
        split=data_config.split,
        max_docs=data_config.max_documents,
    )

    def documents():
        return sources.iter_documents(**spec)

    key = dict(spec)
    if data_config.train_files:
        key["stats"] = [
            (path, os.path.getsize(path), int(os.path.getmtime(path)))
            for path in sources.expand_files(data_config.train_files)
        ]
    return documents, json.dumps(key, sort_keys=True)


def build_tokenizer(config, run_dir: str, documents, init_tokenizer=None) -> BertTokenizer:
    """The run's tokenizer: the one saved in the run directory when the run resumes, else (saved
    there, replacing any) the one of the weights the run starts from, one read from a vocab
    file, or one trained on the corpus."""
    # Only a checkpoint makes the saved tokenizer the run's: a run that failed before its first
    # one (bad data, say) leaves a tokenizer that a rerun with other data must not inherit. The
    # checkpoint's own copy is the one its embeddings were trained with (tokenizer.json may be
    # gone or edited, and retraining would depend on the data and settings being unchanged).
    if checkpoint.has_checkpoint(run_dir):
        _, tokenizer = checkpoint.model_and_tokenizer(checkpoint.load_meta(run_dir))
        if not os.path.exists(os.path.join(run_dir, TOKENIZER_FILE)):
            tokenizer.save(run_dir)
        return tokenizer
    if init_tokenizer is not None:
        init_tokenizer.save(run_dir)
        return init_tokenizer
    tok_config = config.tokenizer
    if tok_config.vocab_file:
        tokenizer = BertTokenizer.from_vocab(tok_config.vocab_file, lowercase=tok_config.lowercase)
    else:
        limit = tok_config.train_documents

        def sample():
            for i, text in enumerate(documents()):
                if limit and i >= limit:
                    return
                yield text

        log.info("training a %d-token WordPiece vocabulary", tok_config.vocab_size)
        tokenizer = BertTokenizer.train(
            sample(), vocab_size=tok_config.vocab_size, lowercase=tok_config.lowercase
        )
    os.makedirs(run_dir, exist_ok=True)
    tokenizer.save(run_dir)
    return tokenizer


def model_config_from(config, tokenizer: BertTokenizer) -> BertConfig:
    model = config.model
    if config.data.max_len > model.max_position_embeddings:
        raise ValueError(
            f"data.max_len {config.data.max_len} exceeds model.max_position_embeddings "
            f"{model.max_position_embeddings}"
        )
    return configs.bert_config(model, tokenizer.vocab_size)


def check_vocab(model_config: BertConfig, tokenizer: BertTokenizer) -> None:
    """The embedding must have a row per token (padding rows beyond them are allowed)."""
    if model_config.vocab_size < tokenizer.vocab_size:
        raise ValueError(
            f"the model has {model_config.vocab_size} embedding rows but the tokenizer has "
            f"{tokenizer.vocab_size} tokens: the tokenizer does not belong to this model"
        )


def pretraining_loss_fn(model: BertForPreTraining, use_nsp: bool):
    def loss_fn(params, batch, rng):
        out = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["segment_ids"],
            batch["attention_mask"],
            batch["masked_lm_positions"],
            deterministic=False,
            rngs={"dropout": rng},
        )
        mlm = losses.mlm_loss(out.mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"])
        correct, count = losses.accuracy_counts(
            out.mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"]
        )
        metrics = {"mlm_loss": mlm, "mlm_accuracy": correct / jnp.maximum(count, 1.0)}
        loss = mlm
        if use_nsp:
            nsp = losses.nsp_loss(out.nsp_logits, batch["next_sentence_labels"])
            nsp_correct, nsp_count = losses.accuracy_counts(
                out.nsp_logits, batch["next_sentence_labels"], jnp.ones_like(out.nsp_logits[:, 0])
            )
            metrics |= {"nsp_loss": nsp, "nsp_accuracy": nsp_correct / nsp_count}
            loss = loss + nsp
        return loss, metrics

    return loss_fn


def make_evaluator(model: BertForPreTraining, batches: list[dict], use_nsp: bool):
    """params -> {eval_loss, mlm_loss, mlm_accuracy, perplexity, nsp_loss, nsp_accuracy}.

    Sums over all predictions of all fixed batches, so the numbers do not depend on batching.
    """
    mesh = train.make_mesh()
    sharding = NamedSharding(mesh, P("data"))

    @jax.jit
    def sums(params, batch):
        out = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["segment_ids"],
            batch["attention_mask"],
            batch["masked_lm_positions"],
        )
        mlm_total, mlm_count = losses.weighted_cross_entropy(
            out.mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"]
        )
        mlm_correct, _ = losses.accuracy_counts(
            out.mlm_logits, batch["masked_lm_ids"], batch["masked_lm_weights"]
        )
        ones = jnp.ones_like(out.nsp_logits[:, 0])
        nsp_total, nsp_count = losses.weighted_cross_entropy(
            out.nsp_logits, batch["next_sentence_labels"], ones
        )
        nsp_correct, _ = losses.accuracy_counts(out.nsp_logits, batch["next_sentence_labels"], ones)
        return dict(
            mlm_total=mlm_total,
            mlm_count=mlm_count,
            mlm_correct=mlm_correct,
            nsp_total=nsp_total,
            nsp_count=nsp_count,
            nsp_correct=nsp_correct,
        )

    device_batches = [train.shard_batch(b, sharding) for b in batches]

    def evaluate(params) -> dict[str, float]:
        totals = None
        for batch in device_batches:
            out = sums(params, batch)
            totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
        t = {k: float(v) for k, v in jax.device_get(totals).items()}
        mlm_loss = t["mlm_total"] / max(t["mlm_count"], 1.0)
        metrics = {
            "mlm_loss": mlm_loss,
            "mlm_accuracy": t["mlm_correct"] / max(t["mlm_count"], 1.0),
            "perplexity": float(np.exp(min(mlm_loss, 50.0))),
            "eval_loss": mlm_loss,
        }
        if use_nsp:
            nsp_loss = t["nsp_total"] / max(t["nsp_count"], 1.0)
            metrics |= {
                "nsp_loss": nsp_loss,
                "nsp_accuracy": t["nsp_correct"] / max(t["nsp_count"], 1.0),
                "eval_loss": mlm_loss + nsp_loss,
            }
        return metrics

    return evaluate


def masking_config(data_config) -> MaskingConfig:
    return MaskingConfig(
        masked_lm_prob=data_config.masked_lm_prob,
        max_predictions=data_config.max_predictions,
        whole_word_mask=data_config.whole_word_mask,
    )


def make_batches(corpus: TokenizedCorpus, tokenizer, model_config, config, batch_size, seed):
    data = config.data
    return PretrainingBatches(
        corpus,
        tokenizer,
        batch_size=batch_size,
        max_len=data.max_len,
        masking=masking_config(data),
        short_seq_prob=data.short_seq_prob,
        nsp=data.nsp,
        seed=seed,
        vocab_size=tokenizer.vocab_size,
    )


def with_cooccurrence_embeddings(params, corpus, tokenizer, model_config, seed: int):
    """`params` with the token embedding rows of the corpus' tokens replaced by unit-length
    PPMI-SVD vectors (`jaxbert.word_vectors`); rows of tokens the corpus never uses stay random.

    Unit rows, not BERT's 0.02 per entry (rows of norm 0.32 at hidden 256): at the budget
    recipe's peak rate (1e-3) Adam moves every entry by about the rate each step, which rewrites
    entries of 0.02 within tens of steps: 100 steps from such rows ended at a held-out MLM loss of
    7.25 and a mean-pooled STS-B dev of 23 (random rows: 7.23, 18), from unit rows at 6.64 and 51
    (README "Results")."""
    # The replicated table's local copy (a multi-host array is not addressable as a whole).
    embedding = params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    table = np.array(embedding.addressable_data(0))
    vectors, found = word_vectors.cooccurrence_embeddings(
        corpus.tokens, tokenizer.vocab_size, table.shape[1], row_norm=1.0, seed=seed
    )
    rows = np.flatnonzero(found)
    table[rows] = vectors[rows]
    embeddings = dict(
        params["bert"]["embeddings"], word_embeddings={"embedding": jnp.asarray(table)}
    )
    return dict(params, bert=dict(params["bert"], embeddings=embeddings))


def pretrain(config, run_dir: str) -> dict:
    """Runs (or resumes) a pretraining experiment in `run_dir`; returns the run summary."""
    if config.data.val_documents <= 0:
        raise ValueError("data.val_documents must be > 0: evaluation needs held-out documents")
    documents, source_key = documents_factory(config.data)
    # Checked before the tokenizer and the corpus cache, which take minutes on a real corpus.
    embedding_init = config.model.embedding_init
    if embedding_init not in EMBEDDING_INITS:
        raise ValueError(
            f"model.embedding_init must be one of {EMBEDDING_INITS}, got {embedding_init!r}"
        )
    cooccurrence = embedding_init == "cooccurrence"
    if cooccurrence and config.init_from:
        raise ValueError(
            "model.embedding_init='cooccurrence' starts a model's token embeddings afresh; "
            f"it cannot be combined with init_from={config.init_from!r}"
        )
    init = None
    if config.init_from and not checkpoint.has_checkpoint(run_dir):
        init = checkpoint.load_encoder(config.init_from)  # (config, tokenizer, params)
    tokenizer = build_tokenizer(config, run_dir, documents, init[1] if init else None)
    train_corpus, val_corpus = prepare_corpus(
        documents,
        tokenizer,
        config.data.cache_dir,
        key=source_key,
        # A config float >= 1 is a count of documents (ConfigDict keeps the field's float type).
        val_documents=(
            int(config.data.val_documents)
            if config.data.val_documents >= 1
            else float(config.data.val_documents)
        ),
    )
    log.info(
        "corpus: %d train documents (%d tokens), %d validation documents",
        train_corpus.num_documents,
        train_corpus.num_tokens,
        val_corpus.num_documents,
    )
    model_config = model_config_from(config, tokenizer)
    if init is not None:
        model_config = configs.with_runtime_options(init[0], config.model)
    check_vocab(model_config, tokenizer)
    model = BertForPreTraining(model_config)
    batch_size = config.train.batch_size
    train_batches = make_batches(
        train_corpus, tokenizer, model_config, config, batch_size, config.seed
    )
    eval_batches = make_batches(
        val_corpus, tokenizer, model_config, config, batch_size, config.seed + 1
    ).fixed_batches(config.train.eval_batches)
    max_len, max_predictions = config.data.max_len, config.data.max_predictions

    def init_params(rng):
        ids = jnp.zeros((1, max_len), jnp.int32)
        positions = jnp.zeros((1, max_predictions), jnp.int32)
        return model.init(rng, ids, ids, jnp.ones_like(ids), positions)["params"]

    def init_from(params):
        if init is None:  # a fresh run with config.embedding_init == "cooccurrence"
            return with_cooccurrence_embeddings(
                params, train_corpus, tokenizer, model_config, config.seed
            )
        loaded = {k: v for k, v in init[2].items() if k in ("bert", "cls")}
        missing = [k for k in ("bert", "cls") if k not in loaded]
        if missing:
            log.warning("%s has no %s weights; those start fresh", config.init_from, missing)
        return dict(params, **{k: jax.tree.map(jnp.asarray, v) for k, v in loaded.items()})

    task = train.Task(
        name="pretraining",
        init_params=init_params,
        init_from=init_from if init is not None or cooccurrence else None,
        loss_fn=pretraining_loss_fn(model, config.data.nsp),
        train_batches=train_batches,
        evaluate=make_evaluator(model, eval_batches, config.data.nsp),
        meta={
            "kind": "pretraining",
            "model_config": model_config.to_dict(),
            "tokenizer": tokenizer.to_json_str(),
            "max_len": max_len,
            "max_predictions": max_predictions,
            "nsp": bool(config.data.nsp),
        },
        best_metric="eval_loss",
        best_mode="min",
        progress_metrics=("loss", "mlm_accuracy", "nsp_accuracy"),
    )
    return train.run(task, config, run_dir)
