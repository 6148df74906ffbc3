"""What the Streamlit app (app.py) needs besides widgets, kept here so it is unit-testable.

- `model_path_from` / `feedback_db_from`: the model directory and the judgements database from
  `--model` / `--feedback_db` (after `--`) or $JAXBERT_MODEL / $JAXBERT_FEEDBACK_DB.
- `find_models`: the models under `runs/` and `--runs_dir`, newest first (the no-model page).
- `batch_judgements`: the rows of a batch result a person corrected, as `feedback.Judgement`s.
- `parse_pairs` / `parse_sentences`: an uploaded or pasted CSV/TSV of sentence pairs, or a list of
  sentences, checked against caps; anything unusable raises `InputError` with a message a user
  can act on.
- `prepare_texts` / `predict_pair` / `probability_chart`: one query's notices (text cut to the
  character cap, over the model's max tokens), its prediction and latency, and its bar chart.
- `predict_pairs` / `top_k`: batch predictions and nearest sentences, through `SentenceModel`.
(A run directory's model card is read by `jaxbert.run_card`.)

Nothing here imports streamlit; model math stays in `SentenceModel` and `jaxbert.evaluate`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np

from jaxbert import evaluate, feedback
from jaxbert.data.nli import NO_GOLD
from jaxbert.serve import SentenceModel

# Header names accepted for each column of an uploaded pair file (compared lower-cased).
SENTENCE1_COLUMNS = ("sentence1", "premise", "sentence_a", "text_a", "sentence 1")
SENTENCE2_COLUMNS = ("sentence2", "hypothesis", "sentence_b", "text_b", "sentence 2")
LABEL_COLUMNS = ("label", "gold_label", "gold", "entailment_judgment")
SENTENCE_COLUMNS = ("sentence", "text", "sentence1", "premise")


class InputError(ValueError):
    """An upload or paste the app cannot use; the message says what to change."""


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` / `--name=VALUE` in argv, else None."""
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def model_path_from(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """`--model PATH` / `--model=PATH` in argv (what follows `--` in `streamlit run app.py --
    --model PATH`), else $JAXBERT_MODEL, else ""."""
    path = _flag(argv, "model")
    return environ.get("JAXBERT_MODEL", "") if path is None else path


def feedback_db_from(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """`--feedback_db FILE` in argv, else $JAXBERT_FEEDBACK_DB, else the per-user default
    (`feedback.default_path`)."""
    return _flag(argv, "feedback_db") or feedback.default_path(environ)


def runs_dirs_from(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """Folders to look for models in: runs/, then `--runs_dir DIR` or $JAXBERT_RUNS_DIR."""
    extra = _flag(argv, "runs_dir") or environ.get("JAXBERT_RUNS_DIR", "")
    return list(dict.fromkeys(["runs", *([extra] if extra else [])]))


def find_models(folders: Sequence[str]) -> list[str]:
    """Model paths in the folders (and the folders themselves), newest first: run directories
    with a checkpoint, deployment bundles' model folders, and Hugging Face / sentence-transformers
    folders (as `hf:<folder>`)."""
    from jaxbert import checkpoint, deploy

    found = {}
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        for path in [folder, *(os.path.join(folder, n) for n in names)]:
            if not os.path.isdir(path):
                continue
            model = os.path.join(path, "model")
            if checkpoint.has_checkpoint(path) or deploy.is_served(path):
                found[path] = os.path.getmtime(path)
            elif deploy.is_served(model):  # a bundle
                found[model] = os.path.getmtime(model)
            elif os.path.isfile(os.path.join(path, "model.safetensors")):
                found[f"hf:{path}"] = os.path.getmtime(path)
    return sorted(found, key=lambda path: -found[path])


def clip_text(text: str, max_chars: int) -> tuple[str, bool]:
    """(stripped text cut to max_chars, whether it was cut)."""
    text = text.strip()
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)


def prepare_texts(
    model: SentenceModel, texts: Mapping[str, str], max_chars: int
) -> tuple[list[str], list[str]]:
    """(texts cut to max_chars, notices) for texts named by what they are ("The premise": ...):
    a notice for each text cut to max_chars and each longer than the model's max tokens."""
    notices, clipped = [], []
    for what, text in texts.items():
        short, cut = clip_text(text, max_chars)
        if cut:
            notices.append(
                f"{what} has {len(text.strip()):,} characters; only the first {max_chars:,} "
                "are used."
            )
        clipped.append(short)
    _, truncated = model.tokenize(clipped)
    notices += [
        f"{what} is longer than the model's {model.max_len} tokens; the rest was ignored."
        for what, cut in zip(texts, truncated)
        if cut
    ]
    return clipped, notices


def predict_pair(model: SentenceModel, premise: str, hypothesis: str) -> dict:
    """{"probabilities": {label: p} (None without a classifier), "similarity": cosine,
    "latency_ms": wall time of the whole answer}. Both sentences are encoded once, together
    (`SentenceModel.pair_embeddings`: one encoder call), for the classifier and the cosine."""
    start = time.perf_counter()
    u, v = model.pair_embeddings([premise], [hypothesis])
    probabilities = None
    if model.has_classifier:
        row = model.probabilities_from_embeddings(u, v)[0]
        probabilities = {name: float(p) for name, p in zip(model.label_names, row)}
    similarity = float(evaluate.cosine_rows(u, v)[0])
    latency_ms = 1000 * (time.perf_counter() - start)
    return dict(probabilities=probabilities, similarity=similarity, latency_ms=latency_ms)


def probability_chart(probabilities: Mapping[str, float], color: str = "#4f46e5") -> dict:
    """A Vega-Lite spec: horizontal bars in the model's label order on a 0-100 % axis, the most
    probable label highlighted, each bar labelled with its percentage."""
    best = max(probabilities, key=probabilities.get)
    values = [{"label": k, "probability": p, "top": k == best} for k, p in probabilities.items()]
    bar = {"type": "bar", "cornerRadiusEnd": 3, "height": {"band": 0.7}}
    highlight = {"condition": {"test": "datum.top", "value": color}, "value": "#c7d2fe"}
    return {
        "data": {"values": values},
        "height": 44 * len(values),
        "encoding": {
            "y": {"field": "label", "type": "nominal", "sort": None, "title": None},
            "x": {
                "field": "probability",
                "type": "quantitative",
                "scale": {"domain": [0, 1]},
                "axis": {"format": "%", "title": None},
            },
        },
        "layer": [
            {"mark": bar, "encoding": {"color": highlight}},
            {
                "mark": {"type": "text", "align": "left", "dx": 4},
                "encoding": {"text": {"field": "probability", "format": ".1%"}},
            },
        ],
    }


def decode_upload(data: bytes | str, name: str, max_bytes: int = 0) -> str:
    """UTF-8 (with or without BOM) text of an upload; InputError for binary or other encodings."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if max_bytes and len(data) > max_bytes:
        raise InputError(
            f"{name} is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
            "Split it into smaller files."
        )
    if b"\x00" in data[:4096]:
        raise InputError(
            f"{name} is not a text file (it contains NUL bytes; UTF-16 or a spreadsheet?). "
            "Save it as a UTF-8 CSV or TSV."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{name} is not UTF-8 text (undecodable byte at position {error.start}). "
            "Save it as a UTF-8 CSV or TSV and upload it again."
        ) from None


@dataclasses.dataclass(frozen=True)
class PairTable:
    """Sentence pairs read from an upload. gold: a label per pair (None where a row has no gold
    label), or None when the file has no label column. notices: what was skipped or cut."""

    sentence1: list[str]
    sentence2: list[str]
    gold: list[str | None] | None
    notices: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.sentence1)


def _find_column(header: list[str], names: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of CSV or TSV text; tab-separated when the
    header line holds a tab."""
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, [])
        rows = [(reader.line_num, row) for row in reader if any(f.strip() for f in row)]
    except csv.Error as error:
        raise InputError(f"cannot parse the file as CSV/TSV: {error}") from None
    return header, rows


def parse_pairs(
    data: bytes | str,
    *,
    name: str = "pasted text",
    label_names: Sequence[str] = (),
    max_rows: int,
    max_chars: int,
    max_bytes: int = 0,
) -> PairTable:
    """Reads a CSV or TSV with a header naming sentence1 and sentence2 (or premise and
    hypothesis) and optionally label.

    label_names: the model's labels; gold labels are matched to them case-insensitively and an
    unknown label is an error (`-` or empty means no gold). With no label_names (a model without
    a classifier) gold labels are kept as written. Rows with an empty sentence or a column count
    different from the header's are skipped; sentences over max_chars are cut; both are reported
    in `notices`. More than max_rows data rows is an error.
    """
    text = decode_upload(data, name, max_bytes)
    if not text.strip():
        raise InputError(f"{name} is empty: expected a header line and sentence pairs.")
    header, rows = _rows(text)
    first, second = _find_column(header, SENTENCE1_COLUMNS), _find_column(header, SENTENCE2_COLUMNS)
    label = _find_column(header, LABEL_COLUMNS)
    if first is None or second is None:
        raise InputError(
            f"{name} needs a header with columns sentence1 and sentence2 (or premise and "
            f"hypothesis), and optionally label; found columns: {header[:10]}."
        )
    if len(rows) > max_rows:
        raise InputError(
            f"{name} has {len(rows):,} rows; the limit is {max_rows:,}. "
            "Split it into smaller files."
        )
    known = {n.lower(): n for n in label_names}
    sentence1, sentence2, gold = [], [], []
    bad_width, empty, cut = [], 0, 0
    for line, row in rows:
        if len(row) != len(header):
            bad_width.append(line)
            continue
        a, cut_a = clip_text(row[first], max_chars)
        b, cut_b = clip_text(row[second], max_chars)
        if not a or not b:
            empty += 1
            continue
        cut += cut_a + cut_b
        if label is not None:
            raw = row[label].strip()
            if raw in NO_GOLD:
                gold.append(None)
            elif not known:
                gold.append(raw)
            elif raw.lower() in known:
                gold.append(known[raw.lower()])
            else:
                raise InputError(
                    f"{name}, line {line}: unknown label {raw!r}; the model's labels are "
                    f"{', '.join(label_names)} (use '-' for a pair without a gold label)."
                )
        sentence1.append(a)
        sentence2.append(b)
    notices = []
    if bad_width:
        notices.append(
            f"Skipped {len(bad_width)} row(s) whose number of columns differs from the header's "
            f"{len(header)} (first at line {bad_width[0]}; quote fields that contain the "
            "separator)."
        )
    if empty:
        notices.append(f"Skipped {empty} row(s) with an empty sentence.")
    if cut:
        notices.append(f"Cut {cut} sentence(s) longer than {max_chars:,} characters.")
    if not sentence1:
        raise InputError(f"{name} has no usable sentence pair. " + " ".join(notices))
    return PairTable(sentence1, sentence2, gold if label is not None else None, notices, name)


def parse_sentences(
    data: bytes | str,
    *,
    name: str = "pasted text",
    max_sentences: int,
    max_chars: int,
    max_bytes: int = 0,
) -> tuple[list[str], list[str]]:
    """(sentences, notices) from one sentence per line, or from a .csv/.tsv file's sentence/text
    column (else its first column). Blank lines and repeats are dropped, long lines cut; more
    than max_sentences sentences is an error."""
    text = decode_upload(data, name, max_bytes)
    if name.lower().endswith((".csv", ".tsv")):
        header, rows = _rows(text)
        column = _find_column(header, SENTENCE_COLUMNS) or 0
        lines = [row[column] if column < len(row) else "" for _, row in rows]
    else:
        lines = text.splitlines()
    sentences, seen, cut = [], set(), 0
    for line in lines:
        sentence, was_cut = clip_text(line, max_chars)
        if sentence and sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
            cut += was_cut
    if len(sentences) > max_sentences:
        raise InputError(
            f"{name} has {len(sentences):,} sentences; the limit is {max_sentences:,}."
        )
    notices = []
    repeats = sum(1 for line in lines if line.strip()) - len(sentences)
    if repeats:
        notices.append(f"Dropped {repeats} repeated sentence(s).")
    if cut:
        notices.append(f"Cut {cut} sentence(s) longer than {max_chars:,} characters.")
    return sentences, notices


def count_truncated(model: SentenceModel, texts: Sequence[str]) -> int:
    """How many texts are longer than the model's max tokens (and so are truncated)."""
    if not texts:
        return 0
    _, truncated = model.tokenize(list(texts))
    return int(truncated.sum())


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Per-pair results as columns (str -> list), in display order, and an NLI report over the
    pairs with a gold label (accuracy, per-class scores, confusion) when there is one."""

    columns: dict[str, list]
    report: dict | None
    truncated: int


def predict_pairs(model: SentenceModel, table: PairTable, batch_size: int = 64) -> BatchResult:
    """Probabilities (if the model has a classifier) and cosine similarity of every pair."""
    u = evaluate.encode_unique(model, table.sentence1, batch_size)
    v = evaluate.encode_unique(model, table.sentence2, batch_size)
    columns: dict[str, list] = {"sentence1": table.sentence1, "sentence2": table.sentence2}
    if table.gold is not None:
        columns["gold"] = table.gold
    report = None
    if model.has_classifier:
        probs = model.probabilities_from_embeddings(u, v, batch_size)
        predicted = [model.label_names[i] for i in probs.argmax(axis=1)]
        columns["predicted"] = predicted
        if table.gold is not None:
            columns["correct"] = [
                None if g is None else g == p for g, p in zip(table.gold, predicted)
            ]
            index = {n: i for i, n in enumerate(model.label_names)}
            has_gold = [i for i, g in enumerate(table.gold) if g is not None]
            if has_gold:
                report = evaluate.nli_report(
                    np.array([index[table.gold[i]] for i in has_gold]),
                    probs.argmax(axis=1)[has_gold],
                    model.label_names,
                )
        for j, name in enumerate(model.label_names):
            columns[f"p_{name}"] = probs[:, j].tolist()
    columns["similarity"] = evaluate.cosine_rows(u, v).tolist()
    truncated = count_truncated(model, list(dict.fromkeys(table.sentence1 + table.sentence2)))
    return BatchResult(columns, report, truncated)


def top_k(query: np.ndarray, embeddings: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(row, cosine similarity) of the k rows of embeddings [n, hidden] nearest to query
    [hidden], best first."""
    norms = np.maximum(np.linalg.norm(embeddings, axis=1) * np.linalg.norm(query), 1e-12)
    scores = embeddings @ query / norms
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k] if k else np.array([], np.int64)
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


def batch_judgements(
    columns: Mapping[str, Sequence],
    verdict_labels: Sequence[str | None],
    verdict_scores: Sequence[float | None],
    *,
    session: str,
    model_source: str,
    model_digest: str,
) -> list[feedback.Judgement]:
    """Judgements for the rows of a batch result (`BatchResult.columns`) where the person chose a
    label (an "nli" judgement of the row's prediction) or gave a 0-5 score (a "similarity"
    judgement of its cosine); rows they left alone give nothing."""
    label_names = [name[2:] for name in columns if name.startswith("p_")]
    out = []
    for i, (label, score) in enumerate(zip(verdict_labels, verdict_scores, strict=True)):
        common = dict(
            session=session,
            model_source=model_source,
            model_digest=model_digest,
            sentence1=columns["sentence1"][i],
            sentence2=columns["sentence2"][i],
            similarity=columns["similarity"][i],
            origin="batch",
        )
        if _given(label) and "predicted" in columns:
            probabilities = {name: columns[f"p_{name}"][i] for name in label_names}
            predicted = columns["predicted"][i]
            out.append(
                feedback.Judgement(
                    task="nli",
                    predicted=predicted,
                    probabilities=probabilities,
                    verdict_label=label,
                    **common,
                )
            )
        if _given(score):
            out.append(feedback.Judgement(task="similarity", verdict_score=score, **common))
    return out


def _given(value) -> bool:
    """Whether a cell of an edited table holds a value (not None, NaN or empty)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return not (isinstance(value, str) and not value.strip())
