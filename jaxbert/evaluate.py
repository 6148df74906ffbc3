"""Honest evaluation: NLI accuracy with per-class scores and confusion, STS correlations, and
MLM / NSP quality of pretraining checkpoints.

Cosine similarity is a *feature* here, never reported as accuracy: NLI accuracy is the share of
pairs whose predicted label equals the gold label; STS quality is the rank correlation between
cosine similarity and human scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from jaxbert import plots
from jaxbert.data.nli import PairDataset
from jaxbert.serve import SentenceModel, cosine_rows


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata's default)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def pearson(x, y) -> float:
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def spearman(x, y) -> float:
    return pearson(rankdata(x), rankdata(y))


def nli_report(gold: np.ndarray, predicted: np.ndarray, label_names: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix."""
    k = len(label_names)
    gold = np.asarray(gold, np.int64)
    predicted = np.asarray(predicted, np.int64)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (gold, predicted), 1)
    per_class = {}
    for i, name in enumerate(label_names):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(confusion[i].sum()),
        }
    return {
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "label_names": list(label_names),
        "n": int(confusion.sum()),
    }


CALIBRATION_BINS = 15
# Where a temperature is looked for: beyond either end, the classifier's confidence carries no
# information (`fit_temperature`).
TEMPERATURE_RANGE = (0.05, 20.0)


def reliability(probs: np.ndarray, gold: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error (x100) and its reliability bins: the predictions grouped by
    their top probability into `bins` equal-width bins, each bin's mean top probability against
    the share of its predictions that are right. ECE is the mean gap weighted by the bins' counts
    (Guo et al. 2017): 0 when a p % prediction is right p % of the time."""
    probs = np.asarray(probs, np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(gold)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    table, gap = [], 0.0
    for b in range(bins):
        chosen = which == b
        count = int(chosen.sum())
        if count:
            mean_confidence = float(confidence[chosen].mean())
            accuracy = float(correct[chosen].mean())
            gap += count * abs(mean_confidence - accuracy)
            table.append({"confidence": mean_confidence, "accuracy": accuracy, "count": count})
    return {"ece": 100 * gap / max(len(confidence), 1), "bins": table}


def fit_temperature(probs: np.ndarray, gold: np.ndarray) -> float:
    """The temperature T minimising the cross-entropy of softmax(log(probs) / T) on labelled
    pairs (temperature scaling, Guo et al. 2017): T > 1 softens an overconfident classifier,
    and no prediction changes. `probs` are the classifier's untempered probabilities (their
    logs are its logits up to a per-row constant, which softmax ignores)."""
    from scipy.optimize import minimize_scalar

    gold = np.asarray(gold, np.int64)
    if len(gold) == 0:
        raise ValueError("fitting a temperature needs labelled pairs")
    rows = np.arange(len(gold))

    def nll(log_t: float) -> float:
        tempered = temper(probs, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.maximum(tempered[rows, gold], 1e-300))))

    best = minimize_scalar(nll, bounds=tuple(np.log(TEMPERATURE_RANGE)), method="bounded")
    return float(np.exp(best.x))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / temperature): what the classifier gives at that temperature."""
    z = np.log(np.maximum(np.asarray(probs, np.float64), 1e-30)) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def encode_unique(model: SentenceModel, sentences: Sequence[str], batch_size: int = 128):
    """Embeds each distinct sentence once (premises repeat across NLI pairs)."""
    unique, inverse = np.unique(np.asarray(sentences, dtype=object), return_inverse=True)
    return model.encode(list(unique), batch_size=batch_size)[inverse]


def nli_probabilities(
    model: SentenceModel, dataset: PairDataset, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's probabilities on labelled pairs [n, labels] and the gold labels [n], both
    in the model's label order (dataset labels are matched to the model's by name)."""
    if not dataset.label_names:
        raise ValueError(f"{dataset.name} has similarity scores, not NLI labels")
    if not model.has_classifier:
        raise ValueError(
            f"{model.source or 'this model'} has no trained NLI classifier (a pretraining run, "
            "an imported model or a non-softmax objective); evaluate it on stsb or sick, or "
            "fine-tune it with the softmax objective (scripts/finetune.py)"
        )
    missing = set(dataset.label_names) - set(model.label_names)
    if missing:
        raise ValueError(
            f"{dataset.name} has labels {sorted(missing)} that the model does not know "
            f"(model labels: {list(model.label_names)})"
        )
    to_model = np.array([model.label_names.index(n) for n in dataset.label_names])
    gold = to_model[np.asarray(dataset.labels)]
    u = encode_unique(model, dataset.sentence1, batch_size)
    v = encode_unique(model, dataset.sentence2, batch_size)
    return model.probabilities_from_embeddings(u, v, batch_size), gold


def nli_scores(probs: np.ndarray, gold: np.ndarray, label_names: Sequence[str]) -> dict:
    """`nli_report` of the top labels, plus the cross-entropy, ECE and reliability bins."""
    report = nli_report(gold, probs.argmax(axis=1), label_names)
    report["loss"] = float(-np.mean(np.log(np.maximum(probs[np.arange(len(gold)), gold], 1e-12))))
    calibration = reliability(probs, gold)
    report["ece"] = calibration["ece"]
    report["reliability"] = calibration["bins"]
    return report


def evaluate_nli(model: SentenceModel, dataset: PairDataset, batch_size: int = 128) -> dict:
    """NLI metrics of the model's classifier (at its temperature); dataset labels are matched to
    the model's by name."""
    probs, gold = nli_probabilities(model, dataset, batch_size)
    report = nli_scores(probs, gold, model.label_names)
    report["temperature"] = model.temperature
    report["dataset"] = dataset.name
    return report


def evaluate_sts(model: SentenceModel, dataset: PairDataset, batch_size: int = 128) -> dict:
    """Spearman and Pearson (x100) between cosine similarity and gold scores."""
    if dataset.label_names:
        raise ValueError(f"{dataset.name} has NLI labels, not similarity scores")
    u = encode_unique(model, dataset.sentence1, batch_size)
    v = encode_unique(model, dataset.sentence2, batch_size)
    cosine = cosine_rows(u, v)
    gold = np.asarray(dataset.labels, np.float64)
    return {
        "spearman": 100 * spearman(cosine, gold),
        "pearson": 100 * pearson(cosine, gold),
        "n": len(gold),
        "dataset": dataset.name,
    }


def format_report(report: dict) -> str:
    """A plain-text table of an NLI or STS report."""
    lines = [f"dataset: {report.get('dataset', '?')}  (n = {report.get('n')})"]
    if "accuracy" in report:
        lines.append(
            f"accuracy  {100 * report['accuracy']:6.2f} %   macro F1 "
            f"{100 * report['macro_f1']:6.2f}"
        )
        if "ece" in report:
            lines.append(
                f"cross-entropy {report['loss']:.4f}   ECE {report['ece']:5.2f}   "
                f"(temperature {report.get('temperature', 1.0):.3g})"
            )
        lines.append(f"{'label':<15}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
        for name, c in report["per_class"].items():
            lines.append(
                f"{name:<15}{100 * c['precision']:>10.2f}{100 * c['recall']:>10.2f}"
                f"{100 * c['f1']:>10.2f}{c['support']:>10d}"
            )
        names = report["label_names"]
        lines.append("confusion (rows gold, columns predicted):")
        lines.append(" " * 15 + "".join(f"{n[:12]:>14}" for n in names))
        for name, row in zip(names, report["confusion"]):
            lines.append(f"{name:<15}" + "".join(f"{x:>14d}" for x in row))
    if "spearman" in report:
        lines.append(f"spearman  {report['spearman']:6.2f}   pearson {report['pearson']:6.2f}")
    for key in ("mlm_accuracy", "perplexity", "nsp_accuracy", "mlm_loss"):
        if key in report:
            lines.append(f"{key:<14}{report[key]:.4f}")
    return "\n".join(lines)


def save_report(report: dict, out_dir: str, name: str) -> str:
    """Writes <out_dir>/<name>.json (and <name>_confusion.png, <name>_reliability.png for NLI);
    returns the JSON path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    if "confusion" in report:
        plots.plot_confusion_matrix(
            report["confusion"],
            report["label_names"],
            os.path.join(out_dir, f"{name}_confusion.png"),
            title=f"{report.get('dataset', name)}: accuracy {100 * report['accuracy']:.1f} %",
        )
    if "reliability" in report:
        plots.plot_reliability(
            report["reliability"],
            os.path.join(out_dir, f"{name}_reliability.png"),
            title=f"{report.get('dataset', name)}: ECE {report['ece']:.2f} "
            f"(temperature {report.get('temperature', 1.0):.3g})",
        )
    return path


# Task name -> split -> dataset specs (presets of jaxbert.data.nli, read from local files).
TASKS = {
    "snli": {"dev": ["snli_dev"], "train": ["snli_train_subset"]},
    "mnli": {
        "dev": ["mnli_dev_matched", "mnli_dev_mismatched"],
        "dev_matched": ["mnli_dev_matched"],
        "dev_mismatched": ["mnli_dev_mismatched"],
    },
    "stsb": {"dev": ["stsb_dev"], "train": ["stsb_train"]},
    "sick": {"dev": ["sick_trial_sts"], "trial": ["sick_trial_sts"], "train": ["sick_train_sts"]},
    "sick_e": {"dev": ["sick_trial"], "trial": ["sick_trial"], "train": ["sick_train"]},
}


def evaluate_dataset(model: SentenceModel, dataset: PairDataset) -> dict:
    """NLI report for labelled pairs, STS report for scored pairs."""
    return evaluate_nli(model, dataset) if dataset.label_names else evaluate_sts(model, dataset)


def evaluate_pretraining(
    run_dir: str, files: str, *, batches: int = 50, batch_size: int = 32, text_field: str = "text"
) -> dict:
    """MLM loss / accuracy / perplexity and NSP accuracy of a pretraining run on text files.

    Examples are built exactly as in training (same max_len, masking rate), with a fixed seed.
    """
    import tempfile

    from jaxbert import checkpoint, pretrain
    from jaxbert.data import sources
    from jaxbert.data.corpus import build_corpus
    from jaxbert.data.masking import MaskingConfig
    from jaxbert.data.pretraining import PretrainingBatches
    from jaxbert.model import BertForPreTraining

    params, meta, step = checkpoint.load_params(run_dir)
    if meta.get("kind") != "pretraining":
        raise ValueError(f"{run_dir!r} is a {meta.get('kind')} run, not a pretraining run")
    model_config, tokenizer = checkpoint.model_and_tokenizer(meta)
    model = BertForPreTraining(model_config)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(
            sources.iter_documents(files=files, text_field=text_field), tokenizer, tmp
        )
        examples = PretrainingBatches(
            corpus,
            tokenizer,
            batch_size=batch_size,
            max_len=meta["max_len"],
            masking=MaskingConfig(max_predictions=meta.get("max_predictions", 20)),
            nsp=meta.get("nsp", True),
            seed=1234,
        ).fixed_batches(batches)
        evaluator = pretrain.make_evaluator(model, examples, meta.get("nsp", True))
        report = evaluator(params)
    report.update(dataset=files, n=batches * batch_size, step=step)
    return report
