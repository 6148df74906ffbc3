"""Sentence-pair readers for NLI (SNLI, MultiNLI, SICK) and STS (STS-B, SICK relatedness).

A `PairSource` says where the pairs are (local files, a Hugging Face hub name or `tfds:<name>`)
and which columns hold the two sentences and the label; `read_pairs` turns it into a
`PairDataset` of strings plus int32 class indices (NLI) or float32 scores in [0, 1] (STS).
`resolve` maps a short spec ("snli_dev", "stsb_train", "snli", "tfds:multi_nli", a file path)
to a `PairSource`; the staged files are irregular (see `PRESETS`), so local files are read
here rather than through a generic CSV reader.

NLI label indices follow the Hugging Face `snli` / `multi_nli` order, `NLI_LABELS`. Rows
without a gold label (`-`, `-1`, empty) are dropped and counted; an unknown label is an error.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from jaxbert.data import sources

logger = logging.getLogger(__name__)

NLI_LABELS = ("entailment", "neutral", "contradiction")
HF_NLI_LABEL_MAP = "0:entailment,1:neutral,2:contradiction"
# The staged SNLI train subset codes labels as 1/2/3 (see shared/data/README.md).
SNLI_SUBSET_LABEL_MAP = "1:neutral,2:contradiction,3:entailment"
NO_GOLD = frozenset({"", "-", "-1"})
FORMATS = ("csv", "tsv", "tsv_noquote", "jsonl", "parquet")
DEFAULT_DATA_ROOT = os.path.join("..", "shared", "data")
PAIRS_HINT = (
    "Read a preset or local files instead: --config.data.train=<preset or file> (fine-tuning) "
    "or --data=<preset or file> (scripts/evaluate.py), or PairSource(files=..., sentence1=...)."
)


@dataclasses.dataclass(frozen=True)
class PairDataset:
    """Sentence pairs with labels; `sentence3` holds hard negatives for triplet datasets.

    labels: [n] int32 indices into `label_names` (classification) or float32 scores in [0, 1]
    (similarity; `label_names == ()`). stats: counts of rows read / kept / dropped.
    """

    sentence1: list[str]
    sentence2: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    name: str
    stats: dict
    sentence3: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sentence1)

    @property
    def is_classification(self) -> bool:
        return bool(self.label_names)

    def label_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}


@dataclasses.dataclass(frozen=True)
class PairSource:
    """Where a pair dataset lives and how to read it.

    name: hub dataset name or `tfds:<name>`; when `files` is set it is only a label for logs.
    files: local file(s), comma-separated, globs allowed; csv/tsv/jsonl, optionally `.gz`.
    sentence1/sentence2/label: column names, or 0-based integer indices when `header=False`.
    label_map: "code:name,..." for numeric label codes (names are matched case-insensitively).
    format: csv (RFC quoting) | tsv (tab, RFC quoting) | tsv_noquote (split each line on tab,
      extra trailing columns ignored) | jsonl | parquet; "" infers it from the file extension.
    kind: "nli" (class labels) or "sts" (float scores, mapped from `score_range` to [0, 1]).
    """

    name: str = ""
    files: str = ""
    split: str = "train"
    config_name: str = ""
    sentence1: str | int = "sentence1"
    sentence2: str | int = "sentence2"
    label: str | int = "label"
    label_map: str = ""
    format: str = ""
    header: bool = True
    kind: str = "nli"
    score_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.kind not in ("nli", "sts"):
            raise ValueError(f"kind must be 'nli' or 'sts', got {self.kind!r}")
        if self.format and self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS} or '', got {self.format!r}")
        if not (self.name or self.files):
            raise ValueError("PairSource needs a hub/TFDS `name` or local `files`")


_STSB = dict(format="tsv_noquote", header=False, sentence1=5, sentence2=6, label=4)
_STSB.update(kind="sts", score_range=(0.0, 5.0))
_SICK = dict(format="tsv_noquote", sentence1="sentence_A", sentence2="sentence_B")
_SICK_NLI = dict(_SICK, label="entailment_judgment")
_SICK_STS = dict(_SICK, label="relatedness_score", kind="sts", score_range=(1.0, 5.0))
_SNLI_SUBSET = dict(
    format="tsv", header=False, sentence1=2, sentence2=3, label=0, label_map=SNLI_SUBSET_LABEL_MAP
)
_HF_NLI = dict(sentence1="premise", sentence2="hypothesis", label_map=HF_NLI_LABEL_MAP)

# Local presets: file under the data root (see `resolve`), layout. Layouts: shared/data/README.md.
_LOCAL = {
    "snli_train_subset": ("snli/snli_train_subset_18k.tsv", _SNLI_SUBSET),
    "snli_train_subset_2k": ("snli/snli_train_subset_2k.tsv", _SNLI_SUBSET),
    "snli_dev": ("snli/snli_1.0_dev.csv", dict(format="csv")),
    "mnli_dev_matched": ("multinli/multinli_1.0_dev_matched.csv", dict(format="csv")),
    "mnli_dev_mismatched": ("multinli/multinli_1.0_dev_mismatched.csv", dict(format="csv")),
    "stsb_train": ("stsbenchmark/sts-train.csv", _STSB),
    "stsb_dev": ("stsbenchmark/sts-dev.csv", _STSB),
    "sick_train": ("sick/SICK_train.txt", _SICK_NLI),
    "sick_trial": ("sick/SICK_trial.txt", _SICK_NLI),
    "sick_train_sts": ("sick/SICK_train.txt", _SICK_STS),
    "sick_trial_sts": ("sick/SICK_trial.txt", _SICK_STS),
}
PRESETS: dict[str, PairSource] = {
    **{name: PairSource(name=name, files=f, **kw) for name, (f, kw) in _LOCAL.items()},
    "snli": PairSource(name="stanfordnlp/snli", **_HF_NLI),
    "multi_nli": PairSource(name="nyu-mll/multi_nli", **_HF_NLI),
    "stsb": PairSource(name="sentence-transformers/stsb", label="score", kind="sts"),
    "tfds:snli": PairSource(name="tfds:snli", **_HF_NLI),
    "tfds:multi_nli": PairSource(name="tfds:multi_nli", **_HF_NLI),
}
_ALIASES = {
    "stanfordnlp/snli": "snli",
    "nyu-mll/multi_nli": "multi_nli",
    "sentence-transformers/stsb": "stsb",
}
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_EXTENSIONS[".parquet"] = "parquet"


def data_root(root: str | None = None) -> str:
    """The folder the local presets live in: `root`, else $JAXBERT_DATA, else ../shared/data."""
    return root or os.environ.get("JAXBERT_DATA") or DEFAULT_DATA_ROOT


def resolve(
    spec: str, *, root: str | None = None, default_label_map: str = "", **overrides
) -> PairSource:
    """Turns a preset name, hub name, `tfds:<name>` or file path into a `PairSource`.

    A path whose file name is one of the staged files (e.g. `sts-dev.csv`) gets that preset's
    column layout. `default_label_map` is the label map of a source that has none of its own
    (a file with numeric label codes). `overrides` replace `PairSource` fields (e.g.
    `split="validation"`).
    """
    key = _ALIASES.get(spec, spec)
    if key in PRESETS:
        source = PRESETS[key]
        if source.files:
            root = data_root(root)
            files = ",".join(os.path.join(root, f) for f in source.files.split(","))
            source = dataclasses.replace(source, files=files)
    elif spec.startswith("tfds:"):
        source = PairSource(name=spec, **_HF_NLI)
    elif os.path.exists(spec) or _format_of(spec, strict=False) or "," in spec:
        source = _preset_for_file(spec) or PairSource(name=os.path.basename(spec), files=spec)
    else:
        source = PairSource(name=spec)
    if default_label_map and not source.label_map and source.kind == "nli":
        source = dataclasses.replace(source, label_map=default_label_map)
    return dataclasses.replace(source, **overrides) if overrides else source


def _preset_for_file(path: str) -> PairSource | None:
    base = os.path.basename(path.split(",")[0])
    for preset in PRESETS.values():
        if preset.files and os.path.basename(preset.files) == base:
            return dataclasses.replace(preset, files=path)
    return None


def _format_of(path: str, strict: bool = True) -> str:
    base = path[:-3] if path.endswith(".gz") else path
    fmt = _EXTENSIONS.get(os.path.splitext(base)[1].lower(), "")
    if strict and not fmt:
        raise ValueError(f"cannot infer the format of {path!r}: set format to one of {FORMATS}")
    return fmt


def _as_source(source) -> PairSource:
    if isinstance(source, PairSource):
        return source
    if isinstance(source, str):
        return resolve(source)
    if hasattr(source, "to_dict"):  # ml_collections.ConfigDict
        source = source.to_dict()
    if isinstance(source, Mapping):
        fields = dict(source)
        if "score_range" in fields:
            fields["score_range"] = tuple(fields["score_range"])
        return PairSource(**fields)
    raise TypeError(f"expected a PairSource, dict or spec string, got {type(source).__name__}")


def _parse_label_map(label_map: str | Mapping) -> dict[str, str]:
    if isinstance(label_map, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in label_map.items()}
    out = {}
    for item in filter(None, (p.strip() for p in label_map.split(","))):
        code, sep, name = item.partition(":")
        if not sep:
            raise ValueError(f"label_map item {item!r} is not 'code:name' (in {label_map!r})")
        out[code.strip()] = name.strip()
    return out


def _column_keys(source: PairSource, header: list[str] | None, where: str) -> tuple:
    keys = []
    for column in (source.sentence1, source.sentence2, source.label):
        is_index = isinstance(column, int) or str(column).isdigit()
        if header is None and not is_index:
            raise ValueError(
                f"{where} is read without a header (header=False): columns must be integer "
                f"indices, got {column!r}"
            )
        if is_index and (header is None or column not in header):
            keys.append(int(column))
        elif column in header:
            keys.append(header.index(column))
        else:
            raise ValueError(f"{where}: missing column {column!r}; columns present: {header}")
    return tuple(keys)


def _file_rows(path: str, source: PairSource) -> Iterator[tuple]:
    """Yields (where, line, s1, s2, label); a malformed row gives (where, line, None, why, None)."""
    fmt = source.format or _format_of(path)
    if fmt == "parquet":
        yield from _dict_rows(_records(source, files=path), source, path)
        return
    with sources.file_errors(path), sources.open_text(path) as f:
        if fmt == "jsonl":
            array, lines = sources.json_array(f, path)
            records = _json_lines(lines) if array is None else enumerate(array, 1)
            yield from _dict_rows(records, source, path)
            return
        if fmt == "tsv_noquote":
            lines = (
                (n, line.rstrip("\r\n").split("\t"))
                for n, line in enumerate(f, 1)
                if line.strip("\r\n")
            )
        else:
            lines = sources.csv_rows(f, path, "," if fmt == "csv" else "\t")
        header = None
        if source.header:
            header = next(lines, (0, None))[1]
            if header is None:
                raise ValueError(f"{path} is empty: expected a header row and pairs")
        k1, k2, kl = _column_keys(source, header, path)
        width = len(header) if header is not None else max(k1, k2, kl) + 1
        for line, row in lines:
            # With a header every row must match it; headerless files may carry extra columns.
            if len(row) < width or (header is not None and len(row) != width):
                yield path, line, None, f"{len(row)} columns, expected {width}", None
            else:
                yield path, line, row[k1], row[k2], row[kl]


def _json_lines(lines) -> Iterator[tuple[int, dict | None]]:
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError:
                yield n, None


def _records(source: PairSource, files: str = "") -> Iterator[tuple[int, dict]]:
    # A misspelt preset reaches here as a hub name: say which preset was meant.
    known = source.name in PRESETS or source.name in _ALIASES
    match = "" if known or files else sources.close_match(source.name, PRESETS)
    presets = f"(local presets: {', '.join(_LOCAL)}; data root $JAXBERT_DATA)"
    hint = f"Did you mean {match!r}? {presets} {PAIRS_HINT}" if match else f"{PAIRS_HINT} {presets}"
    records = sources.iter_records(
        name="" if files else source.name,
        files=files,
        split=source.split,
        config_name=source.config_name,
        streaming=True,
        hint=hint,
    )
    return enumerate(records, 1)


def _dict_rows(records, source: PairSource, where: str) -> Iterator[tuple]:
    keys = (source.sentence1, source.sentence2, source.label)
    checked = False
    for n, record in records:
        if not isinstance(record, Mapping):
            yield where, n, None, "not a JSON object", None
            continue
        if not checked:
            missing = [k for k in keys if k not in record]
            if missing:
                raise ValueError(
                    f"{where}: missing column {missing[0]!r}; columns present: {list(record)}"
                )
            checked = True
        try:
            yield where, n, _text(record[keys[0]]), _text(record[keys[1]]), record[keys[2]]
        except KeyError as e:
            yield where, n, None, f"no field {e}", None


def _label_text(raw) -> str:
    """The label as text. Integer labels that pandas wrote as floats (1.0, "1.0") become "1",
    and its missing value NaN becomes "" (no gold)."""
    label = "" if raw is None else str(raw).strip()
    if "." in label or label.lower() == "nan":
        try:
            number = float(label)
        except ValueError:
            return label
        if math.isnan(number):
            return ""
        if number.is_integer():
            return str(int(number))
    return label


def _text(value) -> str:
    if isinstance(value, bytes):  # TFDS data sources return bytes
        return value.decode("utf-8")
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _rows(source: PairSource) -> Iterator[tuple]:
    if source.files:
        hint = (
            "(for presets, point $JAXBERT_DATA or resolve(..., root=...) at the data folder; "
            f"cwd is {os.getcwd()})"
        )
        for path in sources.expand_files(source.files, hint):
            yield from _file_rows(path, source)
    else:
        where = f"{source.name} (split {source.split})"
        yield from _dict_rows(_records(source), source, where)


def read_pairs(
    source: PairSource | Mapping | str,
    *,
    label_names: Sequence[str] | None = None,
    max_rows: int = 0,
) -> PairDataset:
    """Reads sentence pairs; keeps at most `max_rows` pairs (0: all).

    label_names: class names in index order for kind="nli" (default `NLI_LABELS`).
    Raises ValueError on an unknown label or a missing column; malformed or empty rows are
    dropped and counted. Hub/TFDS failures raise `sources.SourceUnavailableError`.
    """
    source = _as_source(source)
    if source.kind == "sts":
        if label_names:
            raise ValueError("label_names only apply to kind='nli'; STS labels are scores")
        names: tuple[str, ...] = ()
    else:
        names = tuple(label_names or NLI_LABELS)
    index = {n.lower(): i for i, n in enumerate(names)}
    label_map = {k: v.lower() for k, v in _parse_label_map(source.label_map).items()}
    for code, name in label_map.items():
        if name not in index and name not in NO_GOLD:
            raise ValueError(f"label_map maps {code!r} to {name!r}, not one of {names}")
    low, high = source.score_range
    name = source.name or source.files
    stats = collections.Counter(read=0, kept=0, dropped_no_gold=0, malformed=0, empty=0)
    first_malformed = None
    sentence1, sentence2, labels = [], [], []
    rows = _rows(source)
    for where, line, s1, s2, raw in rows:
        stats["read"] += 1
        if s1 is None:
            stats["malformed"] += 1
            first_malformed = first_malformed or f"{where}:{line} ({s2})"
            continue
        label = _label_text(raw)
        if label in NO_GOLD:
            stats["dropped_no_gold"] += 1
            continue
        if not s1.strip() or not s2.strip():
            stats["empty"] += 1
            continue
        if names:
            value = index.get(label_map.get(label, label).lower())
            if value is None:
                raise ValueError(
                    f"unknown label {raw!r} at {where} row {line}; known labels: {names}"
                    + (f", label_map: {source.label_map!r}" if label_map else "")
                    + (
                        f"; numeric codes need a label map, e.g. '{HF_NLI_LABEL_MAP}' (Hugging "
                        "Face's order): --config.data.label_map=... (fine-tuning), --label_map="
                        "... (scripts/evaluate.py) or PairSource(label_map=...)"
                        if label.isdigit() and not label_map
                        else ""
                    )
                )
        else:
            try:
                score = float(label)
            except ValueError:
                score = math.nan
            if not low - 1e-6 <= score <= high + 1e-6:  # also rejects nan
                stats["malformed"] += 1
                why = f"score {label!r} outside score_range {source.score_range}"
                first_malformed = first_malformed or f"{where}:{line} ({why})"
                continue
            value = (score - low) / (high - low)
        sentence1.append(s1)
        sentence2.append(s2)
        labels.append(value)
        stats["kept"] += 1
        if max_rows and stats["kept"] >= max_rows:
            break
    rows.close()
    if first_malformed:
        logger.warning(
            "%s: dropped %d malformed rows, first at %s", name, stats["malformed"], first_malformed
        )
    if not stats["read"]:
        raise ValueError(f"{name}: no pairs (an empty file, or a header only)")
    if not stats["kept"]:
        raise ValueError(f"{name}: no usable pair among {stats['read']} rows: {dict(stats)}")
    dataset = PairDataset(
        sentence1=sentence1,
        sentence2=sentence2,
        labels=np.asarray(labels, np.int32 if names else np.float32),
        label_names=names,
        name=name,
        stats=dict(stats),
    )
    logger.info(
        "%s: kept %d of %d pairs (no gold %d, empty %d, malformed %d)%s",
        name,
        stats["kept"],
        stats["read"],
        stats["dropped_no_gold"],
        stats["empty"],
        stats["malformed"],
        f" labels {dataset.label_counts()}" if names else "",
    )
    return dataset


def mix(datasets: Sequence[PairDataset]) -> PairDataset:
    """Concatenates datasets (e.g. SNLI + MultiNLI); label names and columns must agree."""
    if not datasets:
        raise ValueError("mix() needs at least one dataset")
    first = datasets[0]
    for d in datasets[1:]:
        if d.label_names != first.label_names:
            raise ValueError(
                f"cannot mix datasets with different label names: {first.name} has "
                f"{first.label_names}, {d.name} has {d.label_names}"
            )
        if (d.sentence3 is None) != (first.sentence3 is None):
            raise ValueError(f"cannot mix pairs with triplets ({first.name}, {d.name})")
    stats = collections.Counter()
    for d in datasets:
        stats.update(d.stats)
    return PairDataset(
        sentence1=[s for d in datasets for s in d.sentence1],
        sentence2=[s for d in datasets for s in d.sentence2],
        labels=np.concatenate([d.labels for d in datasets]),
        label_names=first.label_names,
        name="+".join(d.name for d in datasets),
        stats=dict(stats),
        sentence3=None if first.sentence3 is None else [s for d in datasets for s in d.sentence3],
    )


def _label_index(dataset: PairDataset, label: str) -> int:
    lowered = [n.lower() for n in dataset.label_names]
    if label not in lowered:
        raise ValueError(f"{dataset.name} has no {label!r} label (labels: {dataset.label_names})")
    return lowered.index(label)


def entailment_pairs(dataset: PairDataset) -> PairDataset:
    """(premise, entailed hypothesis) pairs, for a ranking loss with in-batch negatives."""
    keep = np.flatnonzero(dataset.labels == _label_index(dataset, "entailment"))
    return PairDataset(
        sentence1=[dataset.sentence1[i] for i in keep],
        sentence2=[dataset.sentence2[i] for i in keep],
        labels=dataset.labels[keep],
        label_names=dataset.label_names,
        name=f"{dataset.name}:entailment_pairs",
        stats={"read": len(dataset), "kept": len(keep)},
    )


def entailment_triplets(dataset: PairDataset) -> PairDataset:
    """(premise, entailed hypothesis, contradicting hypothesis of the same premise) triplets.

    Only entailment pairs whose premise also has a contradiction in `dataset` are kept; when a
    premise has several contradictions they are used in turn. Premises match after strip().
    Found: the 18k SNLI train subset (16,780 distinct premises among 18,000 pairs) gives only
    349 triplets from 6,015 entailment pairs (20k subset: 435 of 6,667), so train it with
    `entailment_pairs` and in-batch negatives; SNLI dev gives 3,172 of 3,329.
    """
    entailment = _label_index(dataset, "entailment")
    contradiction = _label_index(dataset, "contradiction")
    negatives: dict[str, list[int]] = collections.defaultdict(list)
    for i in np.flatnonzero(dataset.labels == contradiction):
        negatives[dataset.sentence1[i].strip()].append(int(i))
    used: collections.Counter = collections.Counter()
    anchors, positives, hard_negatives, keep = [], [], [], []
    for i in np.flatnonzero(dataset.labels == entailment):
        premise = dataset.sentence1[i].strip()
        candidates = negatives.get(premise)
        if not candidates:
            continue
        j = candidates[used[premise] % len(candidates)]
        used[premise] += 1
        anchors.append(dataset.sentence1[i])
        positives.append(dataset.sentence2[i])
        hard_negatives.append(dataset.sentence2[j])
        keep.append(i)
    return PairDataset(
        sentence1=anchors,
        sentence2=positives,
        labels=dataset.labels[np.asarray(keep, np.int64)],
        label_names=dataset.label_names,
        name=f"{dataset.name}:entailment_triplets",
        stats={"read": len(dataset), "kept": len(keep), "premises": len(used)},
        sentence3=hard_negatives,
    )
