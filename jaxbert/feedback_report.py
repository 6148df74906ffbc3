"""What people's judgements say about models: re-scoring, agreement, a verdict, training pairs.

    judged = judged_pairs(FeedbackStore(db).rows())
    report = compare({"a": model_a, "b": model_b}, judged)   # every model on the same pairs
    print(report["verdict"])

Every model is re-scored on every judged pair, not only on the pairs it answered in the app. A
pair's human label is the majority of the people (sessions) who judged it, each person's latest
judgement counting once; a tie has no majority and is left out (and counted). Human similarity
scores are averaged per pair. Reported per model: accuracy with a 95 % Wilson interval, per-class
precision / recall / F1, and Spearman's rho between its cosine and the mean human score; between
models, McNemar's exact test on the pairs one got right and the other wrong; between people,
Fleiss' kappa over the pairs several people labelled (and Cohen's kappa when the same two people
labelled all of them).

`export_csv` / `pair_source` turn the judgements into training pairs (`feedback:FILE` in
`--config.data.train`, via `jaxbert.data.presets.resolve`).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import math
import os
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from jaxbert import evaluate
from jaxbert.feedback import SCORE_RANGE, FeedbackStore

KINDS = {"feedback": "nli", "feedback_sts": "similarity"}  # spec prefix -> judgement task
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class JudgedPairs:
    """Distinct judged pairs. labelled: (sentence1, sentence2) -> {session: label} (latest per
    session); scored: (sentence1, sentence2) -> {session: score}."""

    labelled: dict[tuple[str, str], dict[str, str]]
    scored: dict[tuple[str, str], dict[str, float]]

    def majority(self) -> tuple[list[tuple[str, str]], list[str], int]:
        """(pairs, their majority labels, how many labelled pairs were tied and left out)."""
        pairs, labels, ties = [], [], 0
        for pair, votes in self.labelled.items():
            counts = collections.Counter(votes.values()).most_common()
            if len(counts) > 1 and counts[0][1] == counts[1][1]:
                ties += 1
                continue
            pairs.append(pair)
            labels.append(counts[0][0])
        return pairs, labels, ties

    def mean_scores(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        pairs = list(self.scored)
        return pairs, np.array([np.mean(list(self.scored[p].values())) for p in pairs])


def judged_pairs(rows: Sequence[Mapping]) -> JudgedPairs:
    """Groups judgement rows (`FeedbackStore.rows()`, any order) by pair and person."""
    labelled: dict = collections.defaultdict(dict)
    scored: dict = collections.defaultdict(dict)
    for row in sorted(rows, key=lambda r: r["id"]):  # a person's latest judgement wins
        pair = (row["sentence1"], row["sentence2"])
        if row["task"] == "nli":
            labelled[pair][row["session"]] = row["verdict_label"]
        else:
            scored[pair][row["session"]] = float(row["verdict_score"])
    return JudgedPairs(dict(labelled), dict(scored))


# ---------------------------------------------------------------------------- statistics


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (nan, nan) for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(only_first: int, only_second: int) -> float:
    """Two-sided p-value of McNemar's exact test: the pairs only the first model got right
    against those only the second got right (binomial with p = 1/2); 1.0 when there are none."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    return float(stats.binomtest(only_first, n, 0.5).pvalue)


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels for the same items."""
    labels = sorted(set(first) | set(second))
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for a, b in zip(first, second, strict=True):
        table[index[a], index[b]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = (table.sum(1) @ table.sum(0)) / n**2
    return float((observed - expected) / (1 - expected)) if expected < 1 else float("nan")


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from counts [items, categories] (people per item who chose each category);
    items may have different numbers of raters (at least two each)."""
    counts = np.asarray(counts, np.float64)
    raters = counts.sum(1)
    if len(counts) == 0 or (raters < 2).any():
        raise ValueError("Fleiss' kappa needs at least one item and two raters per item")
    agreement = ((counts * (counts - 1)).sum(1) / (raters * (raters - 1))).mean()
    shares = counts.sum(0) / raters.sum()
    expected = (shares**2).sum()
    return float((agreement - expected) / (1 - expected)) if expected < 1 else float("nan")


def agreement(judged: JudgedPairs) -> dict | None:
    """Agreement between people on the pairs two or more of them labelled, or None."""
    shared = {pair: votes for pair, votes in judged.labelled.items() if len(votes) >= 2}
    if not shared:
        return None
    labels = sorted({label for votes in shared.values() for label in votes.values()})
    counts = np.array(
        [[list(votes.values()).count(label) for label in labels] for votes in shared.values()]
    )
    out = {
        "pairs": len(shared),
        "people": len({session for votes in shared.values() for session in votes}),
        "fleiss_kappa": fleiss_kappa(counts),
        "all_agree": float(np.mean([len(set(v.values())) == 1 for v in shared.values()])),
    }
    raters = {tuple(sorted(votes)) for votes in shared.values()}
    if len(raters) == 1 and len(next(iter(raters))) == 2:  # the same two people throughout
        first, second = next(iter(raters))
        out["cohen_kappa"] = cohen_kappa(
            [votes[first] for votes in shared.values()],
            [votes[second] for votes in shared.values()],
        )
    return out


# ---------------------------------------------------------------------------- re-scoring


def rescore(model, judged: JudgedPairs, batch_size: int = 64) -> dict:
    """One model on every judged pair: NLI accuracy (Wilson interval), per-class scores and a
    correct/incorrect vector (for the paired test); Spearman of its cosine against the mean
    human similarity score."""
    out: dict = {"source": model.source}
    pairs, gold, _ = judged.majority()
    known = [i for i, label in enumerate(gold) if label in model.label_names]
    if model.has_classifier and known:
        first = [pairs[i][0] for i in known]
        second = [pairs[i][1] for i in known]
        u = evaluate.encode_unique(model, first, batch_size)
        v = evaluate.encode_unique(model, second, batch_size)
        predicted = model.probabilities_from_embeddings(u, v, batch_size).argmax(1)
        truth = np.array([model.label_names.index(gold[i]) for i in known])
        report = evaluate.nli_report(truth, predicted, model.label_names)
        correct = predicted == truth
        low, high = wilson_interval(int(correct.sum()), len(correct))
        out["nli"] = dict(
            report, interval=[low, high], correct=correct.tolist(), pairs=[pairs[i] for i in known]
        )
    score_pairs, human = judged.mean_scores()
    if len(score_pairs) >= 3:
        u = evaluate.encode_unique(model, [p[0] for p in score_pairs], batch_size)
        v = evaluate.encode_unique(model, [p[1] for p in score_pairs], batch_size)
        cosine = evaluate.cosine_rows(u, v)
        out["similarity"] = {"spearman": evaluate.spearman(cosine, human), "n": len(human)}
    return out


def compare(models: Mapping[str, object], judged: JudgedPairs) -> dict:
    """Every model re-scored on the same judged pairs, McNemar's test of the most agreed-with
    model against each other one, agreement between people, and a plain-language verdict."""
    scores = {name: rescore(model, judged) for name, model in models.items()}
    _, _, ties = judged.majority()
    report = {
        "models": scores,
        "labelled_pairs": len(judged.labelled),
        "tied_pairs": ties,
        "scored_pairs": len(judged.scored),
        "agreement": agreement(judged),
        "tests": [],
    }
    ranked = sorted(
        (name for name in scores if "nli" in scores[name]),
        key=lambda name: -scores[name]["nli"]["accuracy"],
    )
    for other in ranked[1:]:
        best, second = scores[ranked[0]]["nli"], scores[other]["nli"]
        if best["pairs"] != second["pairs"]:
            continue  # different label sets: not the same pairs, no paired test
        a, b = np.array(best["correct"]), np.array(second["correct"])
        only_best, only_other = int((a & ~b).sum()), int((~a & b).sum())
        report["tests"].append(
            dict(
                best=ranked[0],
                other=other,
                only_best=only_best,
                only_other=only_other,
                p_value=mcnemar(only_best, only_other),
            )
        )
    report["verdict"] = verdict(report, ranked)
    return report


def _percent(nli: dict) -> str:
    low, high = nli["interval"]
    return f"{100 * nli['accuracy']:.1f} % (95 % CI {100 * low:.1f}–{100 * high:.1f} %)"


def verdict(report: dict, ranked: Sequence[str]) -> str:
    """A few sentences a person deciding which model to deploy can act on."""
    scores, lines = report["models"], []
    if ranked:
        best = scores[ranked[0]]["nli"]
        lines.append(
            f"People agree most with {ranked[0]}: {_percent(best)} of the {best['n']} pairs "
            "people labelled."
        )
        for test in report["tests"]:
            other = scores[test["other"]]["nli"]
            significant = test["p_value"] < ALPHA
            lines.append(
                f"Against {test['other']}, at {_percent(other)}: {test['only_best']} pairs only "
                f"{ranked[0]} got right, {test['only_other']} only {test['other']}; McNemar's "
                f"exact p = {test['p_value']:.3g}, "
                + (
                    "a significant difference at the 5 % level."
                    if significant
                    else "not significant at the 5 % level: these judgements cannot tell the "
                    "two apart; collect more before choosing."
                )
            )
    else:
        lines.append("No model with an NLI classifier could be scored on people's labels.")
    similar = sorted(
        (name for name in scores if "similarity" in scores[name]),
        key=lambda name: -scores[name]["similarity"]["spearman"],
    )
    if similar:
        top = scores[similar[0]]["similarity"]
        rest = ", ".join(
            f"{name} {scores[name]['similarity']['spearman']:.3f}" for name in similar[1:]
        )
        lines.append(
            f"On people's similarity scores ({top['n']} pairs) {similar[0]}'s cosine follows them "
            f"best: Spearman {top['spearman']:.3f}" + (f" (against {rest})." if rest else ".")
        )
    if report["agreement"]:
        kappa = report["agreement"]["fleiss_kappa"]
        lines.append(
            f"People agreed with each other with Fleiss' kappa {kappa:.2f} on the "
            f"{report['agreement']['pairs']} pairs several of them labelled."
        )
    return " ".join(lines)


def format_comparison(report: dict) -> str:
    """A plain-text table of `compare`'s report, then its verdict."""
    lines = [
        f"{report['labelled_pairs']} labelled pairs ({report['tied_pairs']} tied, left out), "
        f"{report['scored_pairs']} scored pairs",
        f"{'model':<40}{'n':>6}{'accuracy':>10}{'95 % CI':>16}{'macro F1':>10}{'spearman':>10}",
    ]
    for name, score in report["models"].items():
        nli, similarity = score.get("nli"), score.get("similarity")
        columns = f"{name[:39]:<40}"
        if nli:
            low, high = nli["interval"]
            columns += f"{nli['n']:>6}{100 * nli['accuracy']:>9.1f}%"
            columns += f"{f'{100 * low:.1f}–{100 * high:.1f}':>16}{100 * nli['macro_f1']:>10.1f}"
        else:
            columns += f"{'—':>6}{'—':>10}{'—':>16}{'—':>10}"
        columns += f"{similarity['spearman']:>10.3f}" if similarity else f"{'—':>10}"
        lines.append(columns)
        if nli:
            per_class = ", ".join(f"{k} {100 * c['f1']:.1f}" for k, c in nli["per_class"].items())
            lines.append(f"{'':<4}F1 per class: {per_class}")
    if report["agreement"]:
        agreement_ = report["agreement"]
        line = (
            f"agreement between people: {agreement_['pairs']} pairs, {agreement_['people']} "
            f"people, Fleiss' kappa {agreement_['fleiss_kappa']:.3f}"
        )
        if "cohen_kappa" in agreement_:
            line += f", Cohen's kappa {agreement_['cohen_kappa']:.3f}"
        lines.append(line)
    lines.append("")
    lines.append(report["verdict"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------- training pairs


def training_rows(judged: JudgedPairs, kind: str = "nli") -> list[tuple[str, str, str]]:
    """(sentence1, sentence2, label) rows: the majority human label ("nli"), or the mean human
    0-5 score ("similarity")."""
    if kind == "nli":
        pairs, labels, _ = judged.majority()
        return [(a, b, label) for (a, b), label in zip(pairs, labels)]
    pairs, scores = judged.mean_scores()
    return [(a, b, f"{score:g}") for (a, b), score in zip(pairs, scores)]


def export_csv(judged: JudgedPairs, path: str, kind: str = "nli") -> int:
    """Writes sentence1,sentence2,label (or score) rows to a CSV; returns the row count."""
    rows = training_rows(judged, kind)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence1", "sentence2", "label" if kind == "nli" else "score"])
        writer.writerows(rows)
    return len(rows)


def pair_source(spec: str):
    """`feedback:FILE` (people's labels) or `feedback_sts:FILE` (their 0-5 scores) as a
    `PairSource`: a CSV snapshot of the database, named by its content, in the temp folder."""
    from jaxbert.data.presets import PairSource

    prefix, _, path = spec.partition(":")
    if prefix not in KINDS or not path:
        raise ValueError(f"expected feedback:FILE or feedback_sts:FILE, got {spec!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{spec}: no judgements database at {path!r}")
    kind = KINDS[prefix]
    judged = judged_pairs(FeedbackStore(path).rows())
    rows = training_rows(judged, kind)
    if not rows:
        raise ValueError(f"{spec}: the database has no {kind} judgements to train on")
    digest = hashlib.sha256(repr((kind, rows)).encode()).hexdigest()[:16]
    snapshot = os.path.join(tempfile.gettempdir(), "jaxbert-feedback", f"{prefix}-{digest}.csv")
    if not os.path.exists(snapshot):
        partial = f"{snapshot}.{os.getpid()}.tmp"
        export_csv(judged, partial, kind)
        os.replace(partial, snapshot)
    if kind == "nli":
        return PairSource(name=spec, files=snapshot, format="csv")
    return PairSource(
        name=spec, files=snapshot, format="csv", label="score", kind="sts", score_range=SCORE_RANGE
    )
