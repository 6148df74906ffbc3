"""A run directory's model card: its config's headline fields, summary.json, metrics.jsonl,
eval reports and PNG plots. Read by the app's model-card tab and by the training-curve plot;
unreadable files are reported in `ModelCard.problems`, not raised.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os

# Headline fields of a run's config.json: (label, dotted path).
CONFIG_FIELDS = (
    ("objective", "sbert.objective"),
    ("initialised from", "init_from"),
    ("model size", "model.size"),
    ("training data", "data.train"),
    ("training files", "data.train_files"),
    ("pooling", "sbert.pooling"),
    ("max tokens", "data.max_len"),
    ("batch size", "train.batch_size"),
    ("steps", "train.num_steps"),
    ("learning rate", "optim.lr"),
    ("schedule", "optim.schedule"),
    ("compute dtype", "model.dtype"),
    ("seed", "seed"),
)


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a run directory records about its training. metrics: {split: {name: [(step,
    value)]}}; plots: (caption, path) of its PNGs; eval_reports: (name, report) from eval/."""

    run_dir: str
    config: dict | None
    summary: dict | None
    metrics: dict[str, dict[str, list[tuple[int, float]]]]
    plots: list[tuple[str, str]]
    eval_reports: list[tuple[str, dict]]
    problems: list[str]


def _lookup(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def config_summary(config: dict) -> dict[str, str]:
    """The headline fields of a resolved experiment config, as display strings."""
    kind = "Sentence-BERT fine-tuning" if "sbert" in config else "MLM + NSP pretraining"
    out = {"run": kind}
    for label, dotted in CONFIG_FIELDS:
        value = _lookup(config, dotted)
        if value not in (None, ""):
            out[label] = str(value)
    return out


def _read_json(path: str, problems: list[str]) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        problems.append(f"{os.path.basename(path)} is unreadable: {error}")
        return None


def read_metrics(path: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """metrics.jsonl -> {split: {metric: [(step, value)]}}; unreadable lines (a run still being
    written) are skipped."""
    series: dict[str, dict[str, list]] = {}
    if not os.path.exists(path):
        return series
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
                step, split = int(record.pop("step")), str(record.pop("split"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            for key, value in record.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    series.setdefault(split, {}).setdefault(key, []).append((step, float(value)))
    return series


def read_model_card(run_dir: str) -> ModelCard | None:
    """The model card of a run directory; None when `run_dir` is not a directory (e.g. `hf:`)."""
    if not os.path.isdir(run_dir):
        return None
    problems: list[str] = []
    plots = []
    if os.path.exists(os.path.join(run_dir, "curves.png")):
        plots.append(("Training curves", os.path.join(run_dir, "curves.png")))
    for kind, caption in (("confusion", "Confusion matrix"), ("reliability", "Reliability")):
        for path in sorted(glob.glob(os.path.join(run_dir, "eval", f"*_{kind}.png"))):
            name = os.path.basename(path)[: -len(f"_{kind}.png")]
            plots.append((f"{caption}: {name}", path))
    reports = []
    for path in sorted(glob.glob(os.path.join(run_dir, "eval", "*.json"))):
        report = _read_json(path, problems)
        if isinstance(report, dict):
            reports.append((os.path.basename(path)[: -len(".json")], report))
    return ModelCard(
        run_dir=run_dir,
        config=_read_json(os.path.join(run_dir, "config.json"), problems),
        summary=_read_json(os.path.join(run_dir, "summary.json"), problems),
        metrics=read_metrics(os.path.join(run_dir, "metrics.jsonl")),
        plots=plots,
        eval_reports=reports,
        problems=problems,
    )


def report_row(name: str, report: dict) -> dict:
    """One table row of an eval/*.json report (NLI, STS or MLM)."""
    row = {"report": name, "dataset": report.get("dataset", ""), "pairs": report.get("n")}
    for key, scale in (
        ("accuracy", 100),
        ("macro_f1", 100),
        ("ece", 1),
        ("temperature", 1),
        ("spearman", 1),
        ("pearson", 1),
        ("mlm_accuracy", 100),
        ("perplexity", 1),
    ):
        if isinstance(report.get(key), (int, float)):
            row[key] = round(scale * report[key], 2)
    return row
