"""Sentence-BERT fine-tuning: pair data, siamese objectives and dev evaluation for `train.run`.

Objectives (config.sbert.objective):
  softmax  cross-entropy of a classifier over [u, v, |u-v|] (SBERT; gradients reach the encoder);
           with data.train_scores also a CoSENT loss on scored pairs, a batch of each per step
  mnr      multiple-negatives ranking: premise -> its entailed hypothesis among the batch's
           (with data.train="simcse:<text files>": each sentence -> itself under other dropout,
           unsupervised SimCSE)
  cosine   regression of cos(u, v) on gold similarity scores (STS-B train)
  cosent   CoSENT ranking of cos(u, v) by gold similarity scores (STS-B, SICK relatedness)
  distill  MSE between the student's embedding of a sentence and a teacher's (`jaxbert.distill`)
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxbert import checkpoint, configs, distill, evaluate, loading, losses, train
from jaxbert.data import nli
from jaxbert.data.pair_batches import PairBatches, TokenizedPairs
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.sbert import SentenceBert
from jaxbert.serve import SentenceModel

log = logging.getLogger(__name__)

OBJECTIVES = ("softmax", "mnr", "cosine", "cosent", "distill")
SCORE_OBJECTIVES = ("cosine", "cosent")  # trained on similarity scores rather than labels
HEADS = ("projection", "classifier_hidden", "classifier")  # SentenceBert's parts beside `bert`
METRIC_MODES = {"sts_spearman": "max", "nli_accuracy": "max", "eval_loss": "min"}


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def encoder_source(config, run_dir: str, teacher=None, sentences=()):
    """(model_config, tokenizer, encoder params or None) following the start-up order.

    (1) resuming this run: its own saved model config and tokenizer (params come from its
        checkpoint in train.run); (2) a student cut out of the distillation teacher
        (`distill.student_init="teacher"`), or `init_from`: another run or `hf:<dir>`;
        (3) scratch.
    """
    resuming = checkpoint.has_checkpoint(run_dir)
    if resuming:
        return (*checkpoint.model_and_tokenizer(checkpoint.load_meta(run_dir)), None)
    if teacher is not None and config.distill.student_init == "teacher":
        keep = None
        if config.distill.student_vocab:
            counts = distill.token_counts(teacher.tokenizer, sentences)
            keep = distill.trimmed_vocabulary(
                teacher.tokenizer, counts, config.distill.student_vocab
            )
        layers = [int(i) for i in _split_list(config.distill.student_layers)]
        model_config, tokenizer, params = distill.student_from_teacher(
            teacher,
            layers,
            keep,
            run_dir,
            config.model.vocab_multiple,
            intermediate_size=config.distill.student_intermediate,
            embedding_size=config.distill.student_embedding_size,
        )
        return configs.with_runtime_options(model_config, config.model), tokenizer, params
    if config.init_from:
        model_config, tokenizer, params = checkpoint.load_encoder(config.init_from)
        # A distilled student keeps its projection; an NLI head trained on a frozen encoder goes
        # on training with it.
        params = {k: v for k, v in params.items() if k == "bert" or k in HEADS}
        return configs.with_runtime_options(model_config, config.model), tokenizer, params
    if not config.tokenizer.vocab_file:
        raise ValueError(
            "training from scratch needs config.tokenizer.vocab_file (a WordPiece vocab.txt); "
            "or set config.init_from to a pretraining run directory or hf:<folder>"
        )
    tokenizer = BertTokenizer.from_vocab(
        config.tokenizer.vocab_file, lowercase=config.tokenizer.lowercase
    )
    model_config = configs.bert_config(config.model, tokenizer.vocab_size)
    return model_config, tokenizer, None


def read_training_pairs(config) -> nli.PairDataset:
    """The training set for the objective, mixed from every dataset in config.data.train."""
    datasets = [_read_training_source(spec, config) for spec in _split_list(config.data.train)]
    if not datasets:
        raise ValueError("config.data.train names no dataset")
    dataset = nli.mix(datasets)
    objective = config.sbert.objective
    if objective in SCORE_OBJECTIVES:
        if dataset.label_names:
            raise ValueError(f"the {objective} objective needs similarity scores (e.g. stsb_train)")
    elif not dataset.label_names:
        raise ValueError(f"the {objective} objective needs NLI labels, got similarity scores")
    if objective == "mnr":
        dataset = (
            nli.entailment_triplets(dataset)
            if config.sbert.hard_negatives
            else nli.entailment_pairs(dataset)
        )
    if config.data.max_train_pairs and len(dataset) > config.data.max_train_pairs:
        keep = config.data.max_train_pairs
        dataset = nli.PairDataset(
            sentence1=dataset.sentence1[:keep],
            sentence2=dataset.sentence2[:keep],
            labels=dataset.labels[:keep],
            label_names=dataset.label_names,
            name=dataset.name,
            stats=dataset.stats,
            sentence3=None if dataset.sentence3 is None else dataset.sentence3[:keep],
        )
    log.info("training on %d pairs of %s (%s objective)", len(dataset), dataset.name, objective)
    return dataset


SIMCSE_PREFIX = "simcse:"


def _read_training_source(spec: str, config) -> nli.PairDataset:
    if not spec.startswith(SIMCSE_PREFIX):
        return nli.read_pairs(_resolve(spec, config))
    # Unsupervised SimCSE (Gao et al., 2021): every sentence paired with itself, for the mnr
    # objective; the two copies differ only by their dropout masks, the other rows of the batch
    # are the negatives. Up to data.max_train_pairs sentences (default 100,000) of the text files.
    if config.sbert.objective != "mnr":
        raise ValueError(f"{spec!r} pairs each sentence with itself: use sbert.objective='mnr'")
    if config.model.hidden_dropout <= 0:
        raise ValueError(f"{spec!r} needs dropout (model.hidden_dropout > 0): it is the only noise")
    files = spec[len(SIMCSE_PREFIX) :]
    limit = config.data.max_train_pairs or 100_000
    sentences = distill.text_sentences(files, limit, seed=config.seed)
    if not sentences:
        raise ValueError(f"{spec!r}: no sentences of 4-48 words in {files!r}")
    return nli.PairDataset(
        sentence1=sentences,
        sentence2=list(sentences),
        labels=np.full(len(sentences), nli.NLI_LABELS.index("entailment"), np.int32),
        label_names=tuple(nli.NLI_LABELS),
        name="simcse",
        stats={"read": len(sentences), "kept": len(sentences)},
    )


class DistillBatches(PairBatches):
    """Batches of single sentences (side `a`) with the teacher's embedding of each,
    `targets` float32 [batch, teacher width]; `labels` holds each sentence's row."""

    def __init__(self, pairs: TokenizedPairs, targets: np.ndarray, **options):
        super().__init__(pairs, **options)
        self.targets = targets

    def make_batch(self, indices):
        batch = super().make_batch(indices)
        batch["targets"] = np.asarray(self.targets[batch["labels"]], np.float32)
        return batch


class MixedBatches:
    """Each step a batch of NLI pairs and a batch of scored pairs (`data.train_scores`), for the
    softmax objective with a CoSENT loss beside it. Both are padded to the longer of their two
    bucket lengths, so the encoder runs once over all four sides and the step compiles once per
    bucket, not once per pair of buckets. The scored pairs' keys: input_ids_scored_a,
    attention_mask_scored_a, input_ids_scored_b, attention_mask_scored_b, scored_labels,
    scored_weights. An epoch is one pass over the NLI pairs; the scored pairs cycle on their own.
    """

    def __init__(self, labelled: PairBatches, scored: PairBatches):
        self.labelled, self.scored = labelled, scored

    def __len__(self) -> int:
        return len(self.labelled)

    def __iter__(self) -> MixedBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch, scored = next(self.labelled), next(self.scored)
        length = max(batch["input_ids_a"].shape[1], scored["input_ids_a"].shape[1])
        mixed = {}
        for part, rename in ((batch, lambda k: k), (scored, self._scored_key)):
            for key, value in part.items():
                if key.startswith(("input_ids", "attention_mask")):
                    fill = self.labelled.pad_id if key.startswith("input_ids") else 0
                    widths = ((0, 0), (0, length - value.shape[1]))
                    value = np.pad(value, widths, constant_values=fill)
                mixed[rename(key)] = value
        return mixed

    @staticmethod
    def _scored_key(key: str) -> str:
        for side in ("a", "b"):
            if key.endswith(f"_{side}"):
                return f"{key[:-2]}_scored_{side}"
        return f"scored_{key}"

    def state(self) -> dict:
        return {"labelled": self.labelled.state(), "scored": self.scored.state()}

    def restore(self, state: dict) -> None:
        self.labelled.restore(state["labelled"])
        self.scored.restore(state["scored"])

    def padding_fraction(self) -> float:
        return self.labelled.padding_fraction()


def read_scored_pairs(config) -> nli.PairDataset | None:
    """The scored pairs of config.data.train_scores (for a CoSENT loss beside the softmax one),
    or None when it is empty."""
    specs = _split_list(config.data.train_scores)
    if not specs:
        return None
    if config.sbert.objective != "softmax":
        raise ValueError(
            "data.train_scores adds a CoSENT loss to the softmax objective; "
            f"the {config.sbert.objective} objective takes its pairs from data.train"
        )
    if "bert" in _split_list(config.optim.freeze):
        raise ValueError(
            "data.train_scores trains the encoder on similarity, but optim.freeze='bert' holds "
            "it fixed: set optim.freeze= (empty) or leave data.train_scores empty"
        )
    dataset = nli.mix([nli.read_pairs(_resolve(spec, config)) for spec in specs])
    if dataset.label_names:
        raise ValueError(
            f"data.train_scores needs similarity scores (e.g. stsb_train), got NLI labels "
            f"{list(dataset.label_names)}"
        )
    log.info("with a CoSENT loss on %d scored pairs of %s", len(dataset), dataset.name)
    return dataset


def load_teacher(spec: str) -> SentenceModel:
    if not spec:
        raise ValueError(
            "the distill objective needs config.distill.teacher: hf:<folder> (a Hugging Face "
            "or sentence-transformers folder) or a jaxbert run directory"
        )
    try:
        return SentenceModel.load(spec)
    except (FileNotFoundError, checkpoint.CheckpointError) as error:
        raise ValueError(f"cannot load the teacher {spec!r}: {error}") from error


def distillation_sentences(config) -> list[str]:
    """Unlabelled sentences to distil on: drawn from config.distill.text_files plus every
    sentence of config.distill.pair_datasets, without repeats, in a seeded random order."""
    cfg = config.distill
    sentences = distill.unique(
        distill.text_sentences(cfg.text_files, cfg.max_text_sentences, seed=config.seed)
        + distill.pair_sentences(_split_list(cfg.pair_datasets), root=config.data.data_root or None)
    )
    if not sentences:
        raise ValueError(
            "no sentences to distil on: set config.distill.text_files (with "
            "max_text_sentences > 0) and/or config.distill.pair_datasets"
        )
    order = np.random.default_rng(config.seed).permutation(len(sentences))
    log.info("distilling on %d sentences", len(sentences))
    return [sentences[i] for i in order]


def read_eval_set(spec: str, config) -> nli.PairDataset | None:
    if not spec:
        return None
    return nli.read_pairs(_resolve(spec, config), max_rows=config.data.max_eval_pairs)


def _resolve(spec: str, config) -> nli.PairSource:
    return nli.resolve(
        spec, root=config.data.data_root or None, default_label_map=config.data.label_map
    )


def make_loss_fn(module: SentenceBert, config):
    """(params, batch, rng) -> (loss, metrics) for config.sbert.objective. Both (all three)
    sides of a batch go through the encoder in one call: the same weights, one bigger matmul."""
    sbert_cfg = config.sbert
    objective = sbert_cfg.objective
    frozen_encoder = "bert" in _split_list(config.optim.freeze)

    def embed_sides(params, batch, rng, sides):
        ids = jnp.concatenate([batch[f"input_ids_{s}"] for s in sides])
        mask = jnp.concatenate([batch[f"attention_mask_{s}"] for s in sides])
        embeddings = module.apply(
            {"params": params},
            ids,
            mask,
            deterministic=False,
            rngs={"dropout": rng},
            method=SentenceBert.encode,
        )
        return jnp.split(embeddings, len(sides))

    def loss_fn(params, batch, rng):
        weights = batch["weights"]
        if frozen_encoder:  # no backward pass through an encoder that is not trained
            params = dict(params, bert=jax.lax.stop_gradient(params["bert"]))
        if objective == "softmax":
            scored = "input_ids_scored_a" in batch
            sides = ("a", "b", "scored_a", "scored_b") if scored else ("a", "b")
            u, v, *scored_uv = embed_sides(params, batch, rng, sides)
            logits = module.apply({"params": params}, u, v, method=SentenceBert.classify)
            loss = losses.nli_softmax_loss(logits, batch["labels"], weights)
            correct, count = losses.accuracy_counts(logits, batch["labels"], weights)
            metrics = {"accuracy": correct / jnp.maximum(count, 1.0)}
            if scored:
                cosent = losses.cosent_loss(
                    *scored_uv,
                    batch["scored_labels"],
                    batch["scored_weights"],
                    sbert_cfg.cosent_scale,
                )
                loss = loss + sbert_cfg.cosent_weight * cosent
                metrics["cosent"] = cosent
            return loss, metrics
        if objective == "mnr":
            sides = "abc" if "input_ids_c" in batch else "ab"
            embeddings = embed_sides(params, batch, rng, sides)
            negatives = embeddings[2] if len(embeddings) == 3 else None
            loss = losses.multiple_negatives_ranking_loss(
                embeddings[0],
                embeddings[1],
                weights,
                hard_negatives=negatives,
                scale=sbert_cfg.mnr_scale,
            )
            return loss, {}
        if objective == "distill":
            (student,) = embed_sides(params, batch, rng, "a")
            loss, mse, similarity_mse = losses.distillation_loss(
                student, batch["targets"], weights, config.distill.similarity_weight
            )
            return loss, {"mse": mse, "similarity_mse": similarity_mse}
        u, v = embed_sides(params, batch, rng, "ab")
        if objective == "cosent":
            return losses.cosent_loss(u, v, batch["labels"], weights, sbert_cfg.cosent_scale), {}
        loss = losses.cosine_regression_loss(u, v, batch["labels"], weights)
        return loss, {}

    return loss_fn


def finetune(config, run_dir: str) -> dict:
    """Runs (or resumes) Sentence-BERT fine-tuning in `run_dir`; returns the run summary."""
    sbert_cfg = config.sbert
    if sbert_cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {sbert_cfg.objective!r}; choose one of {OBJECTIVES}")
    primary = config.train.primary_metric
    if primary not in METRIC_MODES:
        raise ValueError(f"unknown primary_metric {primary!r}; choose one of {list(METRIC_MODES)}")
    scored = read_scored_pairs(config)
    teacher, sentences, targets = None, [], None
    if sbert_cfg.objective == "distill":
        teacher = load_teacher(config.distill.teacher)
        sentences = distillation_sentences(config)
        targets = distill.teacher_embeddings(teacher, sentences, config.distill.cache_dir)
    model_config, tokenizer, start_params = encoder_source(config, run_dir, teacher, sentences)
    resuming_meta = checkpoint.load_meta(run_dir) if checkpoint.has_checkpoint(run_dir) else {}
    tokenizer.save(run_dir)

    eval_nli = (
        read_eval_set(config.data.eval_nli, config) if sbert_cfg.objective == "softmax" else None
    )
    eval_sts = read_eval_set(config.data.eval_sts, config)
    if primary == "sts_spearman" and eval_sts is None:
        raise ValueError("primary_metric sts_spearman needs config.data.eval_sts")
    if primary in ("nli_accuracy", "eval_loss") and eval_nli is None:
        raise ValueError(
            f"primary_metric {primary} needs config.data.eval_nli and the softmax objective"
        )

    buckets = tuple(int(b) for b in _split_list(config.data.buckets))
    max_len = min(config.data.max_len, buckets[-1], model_config.max_position_embeddings)
    batch_options = dict(
        batch_size=config.train.batch_size,
        buckets=buckets,
        seed=config.seed,
        pad_id=tokenizer.pad_id,
    )
    if teacher is not None:
        label_names = nli.NLI_LABELS
        rows = np.arange(len(sentences), dtype=np.int32)  # each sentence's row of `targets`
        pairs = TokenizedPairs.from_columns([sentences], rows, (), tokenizer, max_len, "distill")
        batches = DistillBatches(pairs, targets, **batch_options)
    else:
        dataset = read_training_pairs(config)
        label_names = dataset.label_names or nli.NLI_LABELS
        pairs = TokenizedPairs.build(dataset, tokenizer, max_len)
        batches = PairBatches(pairs, **batch_options)
        if scored is not None:
            scored_pairs = TokenizedPairs.build(scored, tokenizer, max_len)
            batches = MixedBatches(batches, PairBatches(scored_pairs, **batch_options))
    if not config.train.num_steps:
        config.train.num_steps = max(1, int(round(config.train.epochs * len(batches))))
    log.info(
        "%d steps (%.2f epochs of %d batches); padding %.1f %%",
        config.train.num_steps,
        config.train.num_steps / len(batches),
        len(batches),
        100 * batches.padding_fraction(),
    )

    features = tuple(_split_list(sbert_cfg.features))
    # A student imitates its teacher's embeddings, normalised or not.
    normalize = teacher.normalize if teacher is not None else bool(sbert_cfg.normalize)
    # A student narrower or wider than its teacher learns a linear map to the teacher's width;
    # a run started from such a student keeps it.
    projection_dim = 0
    if teacher is not None and teacher.hidden_size != model_config.hidden_size:
        projection_dim = teacher.hidden_size
    elif start_params is not None and "projection" in start_params:
        projection_dim = int(start_params["projection"]["kernel"].shape[1])
    elif resuming_meta.get("projection_dim"):
        projection_dim = int(resuming_meta["projection_dim"])
    module = SentenceBert(
        model_config,
        pooling=sbert_cfg.pooling,
        normalize=normalize,
        num_labels=len(label_names),
        features=features,
        projection_dim=projection_dim,
        head_hidden=sbert_cfg.head_hidden,
    )
    meta = {
        "kind": "sbert",
        "model_config": model_config.to_dict(),
        "tokenizer": tokenizer.to_json_str(),
        "label_names": list(label_names),
        "pooling": sbert_cfg.pooling,
        "normalize": normalize,
        "features": list(features),
        "objective": sbert_cfg.objective,
        "has_classifier": sbert_cfg.objective == "softmax",
        "max_len": max_len,
        "projection_dim": projection_dim,
        "head_hidden": sbert_cfg.head_hidden,
    }

    def init_params(rng):
        ids = jnp.zeros((1, buckets[0]), jnp.int32)
        return module.init(rng, ids, jnp.ones_like(ids))["params"]

    def graft_encoder(params):
        """The encoder (which must fit) and any head of the same shapes from the start."""
        loaded = jax.tree.map(jnp.asarray, start_params)
        grafted = dict(params)
        for name, subtree in loaded.items():
            expected = jax.tree.map(lambda x: (x.shape, x.dtype), params.get(name))
            got = jax.tree.map(lambda x: (x.shape, x.dtype), subtree)
            if expected == got:
                grafted[name] = subtree
            elif name == "bert":
                raise ValueError(f"init_from {config.init_from!r}: encoder shapes do not match")
            else:
                log.info("not starting from %s of %s: its shapes differ", name, config.init_from)
        return grafted

    def evaluate_params(params) -> dict[str, float]:
        model = SentenceModel(
            model_config=module.config,
            params=params,
            tokenizer=tokenizer,
            pooling=sbert_cfg.pooling,
            normalize=normalize,
            label_names=label_names,
            features=features,
            max_len=max_len,
            has_classifier=True,
            projection_dim=projection_dim,
            head_hidden=sbert_cfg.head_hidden,
        )
        metrics = {}
        if eval_nli is not None:
            report = evaluate.evaluate_nli(model, eval_nli)
            metrics |= {
                "nli_accuracy": report["accuracy"],
                "eval_loss": report["loss"],
                "nli_macro_f1": report["macro_f1"],
            }
        if eval_sts is not None:
            report = evaluate.evaluate_sts(model, eval_sts)
            metrics |= {"sts_spearman": report["spearman"], "sts_pearson": report["pearson"]}
        return metrics

    task = train.Task(
        name=f"sbert-{sbert_cfg.objective}",
        init_params=init_params,
        init_from=graft_encoder if start_params is not None else None,
        loss_fn=make_loss_fn(module, config),
        train_batches=batches,
        evaluate=evaluate_params,
        meta=meta,
        best_metric=primary,
        best_mode=METRIC_MODES[primary],
        progress_metrics=("loss", "accuracy", "cosent", "mse"),
    )
    summary = train.run(task, config, run_dir)
    if eval_nli is not None and jax.process_index() == 0:
        calibrate(run_dir, eval_nli, config.data.eval_nli)
    return summary


def calibrate(run_dir: str, eval_nli: nli.PairDataset, eval_spec: str) -> dict:
    """Fits the classifier's temperature on the evaluation pairs (the ones that chose the best
    checkpoint, as model selection on a dev set does) and writes it, with the cross-entropy
    and calibration error before and after, to `run_dir`/calibration.json, where
    `SentenceModel.from_dir` finds it. Accuracy does not change: no prediction does."""
    kwargs, step = loading.read_run_dir(run_dir)
    model = SentenceModel(**kwargs)
    probs, gold = evaluate.nli_probabilities(model, eval_nli)
    temperature = evaluate.fit_temperature(probs, gold)
    report = evaluate.nli_scores(probs, gold, model.label_names)
    tempered = evaluate.nli_scores(evaluate.temper(probs, temperature), gold, model.label_names)
    calibration = {
        "temperature": temperature,
        "step": step,
        "fitted_on": f"{eval_spec} ({len(gold)} pairs)",
        "before": {"loss": report["loss"], "ece": report["ece"]},
        "after": {"loss": tempered["loss"], "ece": tempered["ece"]},
    }
    path = os.path.join(run_dir, loading.CALIBRATION_FILE)
    with open(path + ".tmp", "w") as f:  # whole or not at all: a stopped write leaves no file
        json.dump(calibration, f, indent=2)
    os.replace(path + ".tmp", path)
    low, high = evaluate.TEMPERATURE_RANGE
    if not 1.2 * low < temperature < 0.95 * high:
        log.warning(
            "temperature %.3g is at the end of its range: %d evaluation pairs may be too few "
            "or too easy to calibrate on",
            temperature,
            len(gold),
        )
    log.info(
        "temperature %.3f on %s: cross-entropy %.4f -> %.4f, ECE %.2f -> %.2f",
        temperature,
        calibration["fitted_on"],
        report["loss"],
        tempered["loss"],
        report["ece"],
        tempered["ece"],
    )
    return calibration
