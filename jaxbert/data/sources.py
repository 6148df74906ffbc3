"""Records from a named source: local files, a Hugging Face hub dataset, or TFDS.

Everything streams: files are read line by line (or in parquet batches), hub datasets with
`streaming=True`, TFDS through `tfds.data_source` (array_record, no TensorFlow needed).
Errors are raised when `iter_records` / `iter_documents` is called, not at the first `next()`.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

FORMATS = ("txt", "jsonl", "json", "csv", "tsv", "parquet")
LOCAL_FILES_HINT = (
    "Pass local files instead: --config.data.train_files='path/*.jsonl.gz' "
    "(txt, jsonl/json, csv, tsv, parquet; gz or not)."
)


class SourceUnavailableError(RuntimeError):
    """A named dataset could not be reached or read; the message says how to use local files."""


# ---- local files ----------------------------------------------------------------------------


def expand_files(files: str, hint: str = "") -> list[str]:
    """Comma-separated globs -> file paths (each glob's matches sorted, in pattern order).
    A glob matching no file is a FileNotFoundError, `hint` appended to its message."""
    paths: list[str] = []
    for pattern in (p.strip() for p in files.split(",")):
        if not pattern:
            continue
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"No files match {pattern!r}.{hint and ' ' + hint}")
        paths.extend(matches)
    if not paths:
        raise ValueError(f"No file patterns in files={files!r}.")
    return paths


def file_format(path: str) -> str:
    """'txt' | 'jsonl' | 'json' | 'csv' | 'tsv' | 'parquet', from the name (minus `.gz`)."""
    name = path[:-3] if path.endswith(".gz") else path
    ext = Path(name).suffix.lstrip(".").lower()
    if ext not in FORMATS:
        raise ValueError(
            f"Unsupported file type {ext!r} for {path!r}: use one of {', '.join(FORMATS)} "
            "(optionally .gz)."
        )
    return ext


def open_text(path: str) -> io.TextIOBase:
    """A text file, gzipped or not, as UTF-8; a byte-order mark (spreadsheet exports) is
    dropped rather than read as part of the first field."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _iter_json_lines(path: str) -> Iterator[dict]:
    with open_text(path) as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{line_number}: not a JSON object per line (JSON Lines expected): {e}"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}."
                )
            yield record


def _iter_delimited(path: str, delimiter: str) -> Iterator[dict]:
    # Wikipedia-sized fields exceed csv's default 128 KiB limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    with open_text(path) as f:
        yield from csv.DictReader(f, delimiter=delimiter, quoting=quoting)


def _iter_parquet(path: str) -> Iterator[dict]:
    import pyarrow.parquet as pq

    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def _iter_txt_lines(path: str) -> Iterator[dict]:
    with open_text(path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():
                yield {"text": line}


def _iter_txt_blocks(path: str) -> Iterator[str]:
    """Blank-line-separated blocks of a text file, lines joined with '\\n'."""
    block: list[str] = []
    with open_text(path) as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line.strip():
                block.append(line)
            elif block:
                yield "\n".join(block)
                block = []
    if block:
        yield "\n".join(block)


def _iter_file_records(path: str) -> Iterator[dict]:
    fmt = file_format(path)
    if fmt == "txt":
        return _iter_txt_lines(path)
    if fmt in ("jsonl", "json"):
        return _iter_json_lines(path)
    if fmt in ("csv", "tsv"):
        return _iter_delimited(path, "," if fmt == "csv" else "\t")
    return _iter_parquet(path)


def _chain(iterators_factory) -> Iterator:
    for it in iterators_factory:
        yield from it


# ---- Hugging Face hub -----------------------------------------------------------------------


def _unreachable(name: str, error: BaseException) -> SourceUnavailableError:
    cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return SourceUnavailableError(
        f"Could not reach the Hugging Face hub for dataset {name!r} (offline?; "
        f"{type(error).__name__}: {cause}). {LOCAL_FILES_HINT}"
    )


def _hub_records(name: str, split: str, config_name: str, streaming: bool) -> Iterator[dict]:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        dataset = datasets.load_dataset(name, config_name or None, split=split, streaming=streaming)
    except (ConnectionError, DatasetNotFoundError, FileNotFoundError, OSError) as e:
        raise _unreachable(name, e) from e
    return iter(dataset)


# ---- TensorFlow Datasets --------------------------------------------------------------------


def _to_python(value):
    """TFDS values -> plain Python: bytes -> str, numpy scalars -> int/float, recursively."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        value = value.tolist()
        if isinstance(value, list):
            return [_to_python(v) for v in value]
        return _to_python(value)
    return value


def _tfds_records(name: str, split: str, config_name: str) -> Iterator[dict]:
    import tensorflow_datasets as tfds

    full_name = f"{name}/{config_name}" if config_name else name
    # Read at call time (tfds reads TFDS_DATA_DIR once, at import).
    data_dir = os.environ.get("TFDS_DATA_DIR") or None
    try:
        builder = tfds.builder(full_name, data_dir=data_dir)
    except Exception as e:
        raise SourceUnavailableError(
            f"TensorFlow Datasets could not find or load {full_name!r} "
            f"({type(e).__name__}: {e}). {LOCAL_FILES_HINT}"
        ) from e
    if not builder.is_prepared():
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception as e:
            raise SourceUnavailableError(
                f"TFDS dataset {full_name!r} is not prepared in {builder.data_dir!r} and could "
                f"not be downloaded (offline?; {type(e).__name__}: {e}). {LOCAL_FILES_HINT}"
            ) from e
    file_format_name = str(getattr(builder.info.file_format, "value", builder.info.file_format))
    if file_format_name != "array_record":
        raise SourceUnavailableError(
            f"TFDS dataset {full_name!r} is prepared as {file_format_name} in "
            f"{builder.data_dir!r}, which is not random-access without TensorFlow; re-prepare "
            f"it with `tfds build {full_name} --file_format=array_record`. {LOCAL_FILES_HINT}"
        )
    source = builder.as_data_source(split=split)

    def records() -> Iterator[dict]:
        batch = 256
        for start in range(0, len(source), batch):
            indices = list(range(start, min(start + batch, len(source))))
            for record in source.__getitems__(indices):
                yield _to_python(record)

    return records()


# ---- public API -----------------------------------------------------------------------------


def iter_records(
    name: str = "",
    files: str = "",
    split: str = "train",
    config_name: str = "",
    streaming: bool = True,
) -> Iterator[dict]:
    """Records (dicts) from local `files` (globs, comma-separated) or a named dataset.

    `name` is a Hugging Face hub dataset ('stas/openwebtext-10k') or 'tfds:<name>'. For local
    files `split` is ignored (the files are the split); `.txt` gives one {"text": line} per
    non-empty line. Raises FileNotFoundError for a glob without matches and
    SourceUnavailableError when a named dataset cannot be reached.
    """
    if files:
        paths = expand_files(files)
        for path in paths:
            file_format(path)  # unsupported types fail now, not mid-stream
        return _chain(_iter_file_records(p) for p in paths)
    if not name:
        raise ValueError("Give a dataset: either files='path/*.jsonl.gz' or name='hub/dataset'.")
    if name.startswith("tfds:"):
        return _tfds_records(name[len("tfds:") :], split, config_name)
    return _hub_records(name, split, config_name, streaming)


def _record_text(record: dict, text_field: str) -> str:
    try:
        value = record[text_field]
    except KeyError:
        raise ValueError(
            f"Record has no field {text_field!r}; fields present: {sorted(record)}. "
            "Choose one with text_field=..."
        ) from None
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def iter_documents(
    name: str = "",
    files: str = "",
    text_field: str = "text",
    split: str = "train",
    max_docs: int = 0,
    config_name: str = "",
) -> Iterator[str]:
    """The text of each document; `.txt` files hold documents separated by blank lines.

    Empty documents are skipped; `max_docs > 0` stops after that many.
    """
    if files:
        paths = expand_files(files)
        for path in paths:
            file_format(path)

        def texts() -> Iterator[str]:
            for path in paths:
                if file_format(path) == "txt":
                    yield from _iter_txt_blocks(path)
                else:
                    for record in _iter_file_records(path):
                        yield _record_text(record, text_field)

    else:
        records = iter_records(name=name, split=split, config_name=config_name)

        def texts() -> Iterator[str]:
            for record in records:
                yield _record_text(record, text_field)

    def documents() -> Iterator[str]:
        count = 0
        for text in texts():
            if not text.strip():
                continue
            yield text
            count += 1
            if 0 < max_docs <= count:
                return

    return documents()
