"""PNG plots people would rather look at than read: training curves, confusion matrices,
reliability diagrams, recipes' progress and budgets."""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxbert.run_card import read_metrics  # noqa: E402


def _save(fig, out_path: str) -> str:
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


# Metrics drawn when present, in this order; anything else in the log is left out of the plot.
CURVE_METRICS = (
    "loss",
    "mlm_loss",
    "nsp_loss",
    "eval_loss",
    "mlm_accuracy",
    "nsp_accuracy",
    "accuracy",
    "mse",
    "sts_spearman",
    "nli_accuracy",
    "lr",
)


def plot_training_curves(metrics_path: str, out_path: str) -> str:
    """One panel per metric, train and eval series together."""
    series = read_metrics(metrics_path)
    names = [m for m in CURVE_METRICS if any(m in s for s in series.values())]
    names += sorted(
        {m for s in series.values() for m in s}
        - set(names)
        - {"tokens_per_s", "steps_per_s", "eval_seconds", "grad_norm"}
    )[:4]
    if not names:
        return out_path
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for split, style in (("train", "-"), ("eval", "o-")):
            points = series.get(split, {}).get(name)
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, label=split, markersize=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    return _save(fig, out_path)


def plot_confusion_matrix(matrix, label_names, out_path: str, title: str = "") -> str:
    """matrix[i, j] = count of gold label i predicted as j; cells show count and row share."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(label_names), 1.2 + 1.2 * len(label_names)))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(label_names)), label_names, rotation=30, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if shares[i, j] > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                color=color,
                fontsize=9,
            )
    ax.set_title(title)
    return _save(fig, out_path)


def plot_reliability(bins: list[dict], out_path: str, title: str = "") -> str:
    """A reliability diagram: each confidence bin's accuracy against its mean top probability
    (on the diagonal when calibrated), with the bins' shares of predictions beneath."""
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    confidence = [b["confidence"] for b in bins]
    total = max(sum(b["count"] for b in bins), 1)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    ax.plot(confidence, [b["accuracy"] for b in bins], "o-", label="this model")
    ax.set_ylabel("accuracy in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    counts.bar(confidence, [b["count"] / total for b in bins], width=0.05)
    counts.set_xlabel("top probability (mean of the bin)")
    counts.set_ylabel("share")
    ax.set_title(title)
    return _save(fig, out_path)


def plot_feedback_comparison(report: dict, out_path: str) -> str:
    """Models compared on people's judgements (`feedback_report.compare`): accuracy against
    people's labels with 95 % Wilson intervals, and Spearman against their similarity scores."""
    models = report["models"]
    panels = [key for key in ("nli", "similarity") if any(key in m for m in models.values())]
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 1.2 + 0.55 * len(models))
    )
    axes = np.atleast_1d(axes)
    names = list(models)
    rows = np.arange(len(names))
    for ax, panel in zip(axes, panels):
        if panel == "nli":
            values = [models[n]["nli"]["accuracy"] if "nli" in models[n] else np.nan for n in names]
            intervals = np.array(
                [
                    models[n]["nli"]["interval"] if "nli" in models[n] else [np.nan] * 2
                    for n in names
                ]
            )
            errors = np.abs(intervals.T - np.array(values))
            ax.barh(rows, values, xerr=errors, color="#4f46e5", capsize=4)
            ax.set_xlim(0, 1)
            n = max(m["nli"]["n"] for m in models.values() if "nli" in m)
            ax.set_xlabel(f"agreement with people's labels ({n} pairs; 95 % Wilson interval)")
        else:
            values = [
                models[n]["similarity"]["spearman"] if "similarity" in models[n] else np.nan
                for n in names
            ]
            ax.barh(rows, values, color="#0d9488")
            ax.set_xlim(min(0.0, np.nanmin(values)), 1)
            n = max(m["similarity"]["n"] for m in models.values() if "similarity" in m)
            ax.set_xlabel(f"Spearman with people's 0-5 scores ({n} pairs)")
        for row, value in zip(rows, values):
            if not np.isnan(value):
                ax.text(value, row, f" {value:.3f}", va="bottom", fontsize=8)
        ax.set_yticks(rows, [name[-40:] for name in names])
        ax.invert_yaxis()
    return _save(fig, out_path)


def plot_recipe_progress(recipes: dict[str, list[str]], out_path: str) -> str:
    """Dev quality against training time, one line per recipe through all its stages.

    recipes: name -> [run directory of each stage, ...] in order (`recipe_stages`).
    Each run's eval points (metrics.jsonl) are placed at the wall-clock minutes spent so far:
    the earlier stages' `wall_seconds` (summary.json) plus this stage's, shared out by step.
    Panels: STS-B dev Spearman and SNLI dev accuracy (where a stage measures it); stage
    boundaries are marked.
    """

    panels = (("sts_spearman", "STS-B dev Spearman"), ("nli_accuracy", "SNLI dev accuracy (%)"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for index, (name, stages) in enumerate(recipes.items()):
        offset, lines = 0.0, {key: [] for key, _ in panels}
        for run_dir in stages:
            summary_path = os.path.join(run_dir, "summary.json")
            if not os.path.exists(summary_path):
                continue
            with open(summary_path) as f:
                summary = json.load(f)
            minutes, steps = summary.get("wall_seconds", 0.0) / 60, max(summary.get("steps", 1), 1)
            series = read_metrics(os.path.join(run_dir, "metrics.jsonl")).get("eval", {})
            for key, _ in panels:
                scale = 100.0 if key == "nli_accuracy" else 1.0
                lines[key] += [
                    (offset + minutes * s / steps, v * scale) for s, v in series.get(key, [])
                ]
            offset += minutes
            for ax in axes:
                ax.axvline(offset, color="0.85", lw=0.8)
        for ax, (key, title) in zip(axes, panels):
            if lines[key]:
                x, y = zip(*lines[key])
                ax.plot(x, y, "o-", markersize=3, label=name, color=f"C{index}")
            ax.set_title(title)
            ax.set_xlabel("training minutes (2-core CPU), all stages")
            ax.grid(alpha=0.3)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, out_path)


def recipe_stages(run_dir: str) -> list[str]:
    """The run directories a recipe went through to make run_dir, first to last.

    Follows each run's `init_from` (config.json) back while it names another run; `hf:` imports
    and runs from nothing end the chain. run_dir may be a scripts/reproduce.sh WORKDIR, whose
    final/ is taken. A stage is looked for beside the later one first (its name in the same
    WORKDIR), so a moved or copied WORKDIR reads its own stages.
    """
    if os.path.isdir(os.path.join(run_dir, "final")):
        run_dir = os.path.join(run_dir, "final")
    stages = []
    while run_dir and run_dir not in stages:
        config_path = os.path.join(run_dir, "config.json")
        if not os.path.exists(config_path):
            raise FileNotFoundError(f"{config_path} is missing: is {run_dir} a finished run?")
        stages.insert(0, run_dir)
        with open(config_path) as f:
            init_from = json.load(f).get("init_from", "")
        if not init_from or init_from.startswith("hf:"):
            break
        beside = os.path.join(os.path.dirname(run_dir), os.path.basename(init_from.rstrip("/")))
        run_dir = beside if os.path.isdir(beside) else init_from
    return stages


def budget_points(workdirs: list[str]) -> list[dict]:
    """One point per `scripts/reproduce.sh scratch WORKDIR` run (PRETRAIN_STEPS varied).

    Each point: the pretraining tokens (steps x batch x sequence length; sequences are packed),
    the training minutes of all stages (their summaries' `wall_seconds`; tokenising and the dev
    evaluations are left out) and the final model's STS-B and SNLI dev scores from
    `scripts/evaluate.py` (WORKDIR/final/eval/). Sorted by tokens.
    """

    points = []
    for work in workdirs:

        def read(*parts, work=work):
            path = os.path.join(work, *parts)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"{path} is missing: is {work} a finished `scripts/reproduce.sh scratch` "
                    "work directory?"
                )
            with open(path) as f:
                return json.load(f)

        pretrain, config = read("pretrain", "summary.json"), read("pretrain", "config.json")
        stages = [os.path.relpath(stage, work) for stage in recipe_stages(work)]
        minutes = sum(read(stage, "summary.json")["wall_seconds"] for stage in stages) / 60
        sequence_tokens = config["train"]["batch_size"] * config["data"]["max_len"]
        points.append(
            {
                "workdir": work,
                "pretrain_steps": pretrain["steps"],
                "tokens": pretrain["steps"] * sequence_tokens,
                "minutes": minutes,
                "stsb": read("final", "eval", "stsb_stsb_dev.json")["spearman"],
                "snli": 100.0 * read("final", "eval", "snli_snli_dev.json")["accuracy"],
            }
        )
    return sorted(points, key=lambda point: point["tokens"])


def plot_budgets(
    points: list[dict],
    out_path: str,
    references: dict | None = None,
    before: list[dict] | None = None,
) -> str:
    """STS-B and SNLI dev against pretraining tokens (log scale), each point labelled with the
    training minutes it took; references: {"stsb" | "snli": [(label, value), ...]} drawn as
    dashed lines (targets, baselines); `before`: points of an earlier recipe, drawn in grey for
    comparison."""

    panels = (("stsb", "STS-B dev Spearman"), ("snli", "SNLI dev accuracy (%)"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    tokens = [point["tokens"] / 1e6 for point in points]
    for ax, (key, title) in zip(axes, panels):
        if before:
            ax.plot(
                [point["tokens"] / 1e6 for point in before],
                [point[key] for point in before],
                "s:",
                color="0.6",
                label="the recipe before",
            )
        values = [point[key] for point in points]
        ax.plot(tokens, values, "o-", color="C0", label="scratch recipe")
        for x, y, point in zip(tokens, values, points):
            ax.annotate(
                f"{point['minutes']:.0f} min",
                (x, y),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
        for index, (label, value) in enumerate((references or {}).get(key, [])):
            ax.axhline(value, ls="--", lw=1, color=f"C{index + 1}", label=f"{label} ({value:g})")
        ax.set_xscale("log")
        ax.set_xticks(tokens, [f"{x:.2g} M" for x in tokens])
        ax.minorticks_off()
        ax.margins(x=0.15)
        ax.set_title(title)
        ax.set_xlabel("pretraining tokens (log scale); labels: training minutes, all stages")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_path)
