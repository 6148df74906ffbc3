"""Where sentence-pair datasets live: `PairSource`, the label maps and the presets table.

A `PairSource` says where the pairs are (local files, a Hugging Face hub name or `tfds:<name>`)
and which columns hold the two sentences and the label. `resolve` maps a short spec
("snli_dev", "stsb_train", "snli", "tfds:multi_nli", a file path) to one; the staged files are
irregular (see `PRESETS`; layouts in shared/data/README.md), so each preset carries its layout.
`jaxbert.data.nli.read_pairs` reads them.

NLI label indices follow the Hugging Face `snli` / `multi_nli` order, `NLI_LABELS`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

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

# Local presets: file under the data root (see `resolve`), layout.
LOCAL = {
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
    **{name: PairSource(name=name, files=f, **kw) for name, (f, kw) in LOCAL.items()},
    "snli": PairSource(name="stanfordnlp/snli", **_HF_NLI),
    "multi_nli": PairSource(name="nyu-mll/multi_nli", **_HF_NLI),
    "stsb": PairSource(name="sentence-transformers/stsb", label="score", kind="sts"),
    "tfds:snli": PairSource(name="tfds:snli", **_HF_NLI),
    "tfds:multi_nli": PairSource(name="tfds:multi_nli", **_HF_NLI),
}
ALIASES = {
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
    key = ALIASES.get(spec, spec)
    if key in PRESETS:
        source = PRESETS[key]
        if source.files:
            root = data_root(root)
            files = ",".join(os.path.join(root, f) for f in source.files.split(","))
            source = dataclasses.replace(source, files=files)
    elif spec.startswith("tfds:"):
        source = PairSource(name=spec, **_HF_NLI)
    elif spec.startswith(("feedback:", "feedback_sts:")):  # people's judgements in the app
        from jaxbert import feedback_report

        source = feedback_report.pair_source(spec)
    elif os.path.exists(spec) or format_of(spec, strict=False) or "," in spec:
        source = _preset_for_file(spec) or PairSource(name=os.path.basename(spec), files=spec)
    else:
        source = PairSource(name=spec)
    if default_label_map and not source.label_map and source.kind == "nli":
        source = dataclasses.replace(source, label_map=default_label_map)
    return dataclasses.replace(source, **overrides) if overrides else source


def as_source(source) -> PairSource:
    """A `PairSource` from itself, a spec string (`resolve`) or a dict / ConfigDict of fields."""
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


def _preset_for_file(path: str) -> PairSource | None:
    base = os.path.basename(path.split(",")[0])
    for preset in PRESETS.values():
        if preset.files and os.path.basename(preset.files) == base:
            return dataclasses.replace(preset, files=path)
    return None


def format_of(path: str, strict: bool = True) -> str:
    """The `PairSource.format` a file's extension implies (minus `.gz`); "" when none and not
    `strict`."""
    base = path[:-3] if path.endswith(".gz") else path
    fmt = _EXTENSIONS.get(os.path.splitext(base)[1].lower(), "")
    if strict and not fmt:
        raise ValueError(f"cannot infer the format of {path!r}: set format to one of {FORMATS}")
    return fmt


def is_known(name: str) -> bool:
    """Whether `name` is a preset or one of the hub names a preset stands for."""
    return name in PRESETS or name in ALIASES
