"""Judgements choose the model (jaxbert.feedback_report, scripts/evaluate.py --task feedback): a
small made-up database whose answers are known by hand, models whose answers are fixed."""

import csv
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxbert import feedback_report, plots
from jaxbert.data import nli
from jaxbert.feedback import FeedbackStore, Judgement

SCRIPT = str(pathlib.Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py")
E, N, C = nli.NLI_LABELS
PAIRS = {i: (f"premise {i}", f"hypothesis {i}") for i in range(1, 7)}
# (session, pair, label), in the order they were given.
LABELS = [
    ("alice", 1, E),
    ("bob", 1, E),
    ("alice", 2, N),
    ("bob", 2, C),  # pair 2: a tie, no majority
    ("alice", 3, C),
    ("alice", 4, E),
    ("alice", 4, N),  # alice changed her mind: her latest counts, once
    ("alice", 5, C),
    ("bob", 5, C),
    ("carol", 5, E),
    ("bob", 6, E),
]
GOLD = {1: E, 3: C, 4: N, 5: C, 6: E}
SCORES = [("alice", 1, 5.0), ("bob", 1, 4.0), ("alice", 2, 1.0), ("alice", 3, 0.0)]
SCORES += [("alice", 4, 3.0)]  # means: pair 1 4.5, 2 1.0, 3 0.0, 4 3.0


class FixedModel:
    """Answers fixed per pair: `labels[i]` for pair i and cosine `cosines[i]`. Sentences are
    embedded as 2-D unit vectors at distinct angles, so the classifier can tell which pair it
    is given from the embeddings alone (as `evaluate.encode_unique` hands them over)."""

    label_names = nli.NLI_LABELS
    has_classifier = True

    def __init__(self, source, labels, cosines):
        self.source = source
        self.vectors, self.answers = {}, {}
        for i, (premise, hypothesis) in PAIRS.items():
            angle = float(i)  # radians: distinct, and never a hypothesis's angle below
            self.vectors[premise] = (np.cos(angle), np.sin(angle))
            turn = angle + np.arccos(cosines.get(i, 0.0)) + 10.0 * 2 * np.pi
            self.vectors[hypothesis] = (np.cos(turn), np.sin(turn))
            self.answers[(premise, hypothesis)] = labels.get(i, N)
        self.names = {np.round(v, 9).tobytes(): s for s, v in self.vectors.items()}

    def encode(self, sentences, batch_size=64):
        return np.array([self.vectors[s] for s in sentences], np.float64)

    def probabilities_from_embeddings(self, u, v, batch_size=64):
        out = np.zeros((len(u), 3))
        for row, (a, b) in enumerate(zip(u, v)):
            pair = (self.names[np.round(a, 9).tobytes()], self.names[np.round(b, 9).tobytes()])
            out[row, self.label_names.index(self.answers[pair])] = 1.0
        return out


# A: all of GOLD right except pair 6; cosines in people's order. B: 3 of 5, cosines reversed.
MODEL_A = FixedModel("a", {1: E, 3: C, 4: N, 5: C, 6: C, 2: E}, {1: 0.9, 2: 0.2, 3: 0.1, 4: 0.5})
MODEL_B = FixedModel("b", {1: E, 3: N, 4: N, 5: E, 6: E}, {1: 0.1, 2: 0.5, 3: 0.9, 4: 0.2})


def write_db(path) -> FeedbackStore:
    store = FeedbackStore(str(path))
    common = dict(model_source="m", model_digest="d", similarity=0.5)
    for session, i, label in LABELS:
        a, b = PAIRS[i]
        store.add(
            Judgement(
                session=session,
                task="nli",
                sentence1=a,
                sentence2=b,
                predicted=N,
                verdict_label=label,
                **common,
            )
        )
    for session, i, score in SCORES:
        a, b = PAIRS[i]
        store.add(
            Judgement(
                session=session,
                task="similarity",
                sentence1=a,
                sentence2=b,
                verdict_score=score,
                **common,
            )
        )
    return store


@pytest.fixture
def judged(tmp_path):
    return feedback_report.judged_pairs(write_db(tmp_path / "fb.sqlite3").rows())


def test_majority_labels_latest_per_person_and_ties(judged):
    pairs, labels, ties = judged.majority()
    assert dict(zip(pairs, labels)) == {PAIRS[i]: label for i, label in GOLD.items()}
    assert ties == 1
    assert judged.labelled[PAIRS[4]] == {"alice": N}
    pairs, means = judged.mean_scores()
    assert dict(zip(pairs, means.tolist())) == {
        PAIRS[1]: 4.5,
        PAIRS[2]: 1.0,
        PAIRS[3]: 0.0,
        PAIRS[4]: 3.0,
    }


def test_models_are_rescored_on_the_same_pairs_with_known_answers(judged):
    report = feedback_report.compare({"A": MODEL_A, "B": MODEL_B}, judged)
    a, b = report["models"]["A"], report["models"]["B"]
    assert (a["nli"]["n"], a["nli"]["accuracy"], b["nli"]["accuracy"]) == (5, 0.8, 0.6)
    assert a["nli"]["interval"] == pytest.approx([0.3755, 0.9638], abs=1e-4)  # Wilson, 4 of 5
    # A: entailment P 1/1 R 1/2, contradiction P 2/3 R 2/2, neutral P 1/1 R 1/1.
    assert a["nli"]["per_class"][E]["f1"] == pytest.approx(2 / 3)
    assert a["nli"]["per_class"][C]["f1"] == pytest.approx(0.8)
    assert a["nli"]["per_class"][N]["f1"] == 1.0
    assert a["similarity"] == {"spearman": pytest.approx(1.0), "n": 4}
    assert b["similarity"]["spearman"] == pytest.approx(-1.0)
    (test,) = report["tests"]
    # Only A right: pairs 3 and 5; only B right: pair 6. Exact binomial: P(X <= 1 | 3, 1/2) x 2.
    assert (test["best"], test["only_best"], test["only_other"]) == ("A", 2, 1)
    assert test["p_value"] == pytest.approx(1.0)
    verdict = report["verdict"]
    assert verdict.startswith("People agree most with A: 80.0 % (95 % CI 37.6–96.4 %)")
    assert "not significant" in verdict and "collect more" in verdict
    assert "A's cosine follows them best: Spearman 1.000 (against B -1.000)" in verdict
    table = feedback_report.format_comparison(report)
    assert "5 labelled pairs" not in table and "6 labelled pairs (1 tied, left out)" in table


def test_a_significant_difference_is_called_significant():
    assert feedback_report.mcnemar(12, 1) == pytest.approx(2 * 14 / 2**13)
    assert feedback_report.mcnemar(0, 0) == 1.0
    assert feedback_report.wilson_interval(0, 0) != feedback_report.wilson_interval(0, 0)  # nan
    low, high = feedback_report.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)


def test_agreement_between_people(judged):
    found = feedback_report.agreement(judged)
    # Pairs 1 (E, E), 2 (N, C), 5 (C, C, E): mean P_i = 4/9, P_e = 19/49: kappa = 5/54.
    assert found["fleiss_kappa"] == pytest.approx(5 / 54)
    assert (found["pairs"], found["people"]) == (3, 3)
    assert "cohen_kappa" not in found  # three different people: not Cohen's two raters
    assert feedback_report.cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == 0.5
    two = feedback_report.JudgedPairs(
        {("x", "y"): {"p": E, "q": E}, ("z", "w"): {"p": N, "q": C}, ("u", "v"): {"p": C, "q": C}},
        {},
    )
    found = feedback_report.agreement(two)
    # Cohen: observed 2/3; p's marginals E, N, C = 1/3 each, q's E 1/3, C 2/3: expected 1/3.
    assert found["cohen_kappa"] == pytest.approx(0.5)
    assert feedback_report.fleiss_kappa([[2, 0], [0, 2]]) == 1.0
    with pytest.raises(ValueError, match="two raters per item"):
        feedback_report.fleiss_kappa([[1, 0]])


def test_judgements_become_training_pairs(tmp_path):
    db = tmp_path / "fb.sqlite3"
    write_db(db)
    source = nli.resolve(f"feedback:{db}")
    dataset = nli.read_pairs(source)
    got = {
        (a, b): dataset.label_names[label]
        for a, b, label in zip(dataset.sentence1, dataset.sentence2, dataset.labels)
    }
    assert got == {PAIRS[i]: label for i, label in GOLD.items()}
    scores = nli.read_pairs(nli.resolve(f"feedback_sts:{db}"))
    assert scores.label_names == ()
    assert sorted(scores.labels.tolist()) == pytest.approx([0.0, 0.2, 0.6, 0.9])
    out = tmp_path / "pairs.csv"
    judged = feedback_report.judged_pairs(FeedbackStore(str(db)).rows())
    assert feedback_report.export_csv(judged, str(out)) == 5
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0].keys() == {"sentence1", "sentence2", "label"}
    with pytest.raises(FileNotFoundError, match="no judgements database"):
        nli.resolve(f"feedback:{tmp_path / 'missing.sqlite3'}")


def test_comparison_chart(judged, tmp_path):
    report = feedback_report.compare({"A": MODEL_A, "B": MODEL_B}, judged)
    path = plots.plot_feedback_comparison(report, str(tmp_path / "cmp.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_script_compares_real_models(tmp_path):
    from test_app import build_tiny_run

    tiny = build_tiny_run(str(tmp_path / "tiny"))
    db = tmp_path / "fb.sqlite3"
    write_db(db)
    out = tmp_path / "report"
    command = [sys.executable, SCRIPT, "--task=feedback", f"--db={db}", f"--out={out}"]
    command += [f"--model={tiny['run']}", f"--model={tiny['hf']}"]
    command += [f"--export_csv={tmp_path / 'pairs.csv'}"]
    env = dict(os.environ, JAXBERT_COMPILATION_CACHE="")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "People agree most with " + tiny["run"] in done.stdout
    assert "wrote 5 nli pairs" in done.stdout
    assert (out / "feedback.json").exists() and (out / "feedback.png").exists()
