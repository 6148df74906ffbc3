"""Sentence-pair readers for NLI (SNLI, MultiNLI, SICK) and STS (STS-B, SICK relatedness).

`read_pairs` turns a `PairSource` (where the pairs are and which columns hold them; the
presets and label maps are in `jaxbert.data.presets`, re-exported here) into a `PairDataset`
of strings plus int32 class indices (NLI) or float32 scores in [0, 1] (STS). The staged files
are irregular, so local files are read here rather than through a generic CSV reader.

Rows without a gold label (`-`, `-1`, empty) are dropped and counted; an unknown label is an
error.
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

from jaxbert.data import presets, sources

# The presets' names, re-exported: readers and configs use them as nli.<name>.
from jaxbert.data.presets import (  # noqa: F401
    HF_NLI_LABEL_MAP,
    NLI_LABELS,
    NO_GOLD,
    PRESETS,
    SNLI_SUBSET_LABEL_MAP,
    PairSource,
    resolve,
)

logger = logging.getLogger(__name__)


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
    fmt = source.format or presets.format_of(path)
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
    known = presets.is_known(source.name)
    match = "" if known or files else sources.close_match(source.name, PRESETS)
    local = f"(local presets: {', '.join(presets.LOCAL)}; data root $JAXBERT_DATA)"
    pairs_hint = presets.PAIRS_HINT
    hint = f"Did you mean {match!r}? {local} {pairs_hint}" if match else f"{pairs_hint} {local}"
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
    source = presets.as_source(source)
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
