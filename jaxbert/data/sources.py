"""Records from a named source: local files, a Hugging Face hub dataset, or TFDS.

Everything streams: files are read line by line (or in parquet batches), hub datasets with
`streaming=True`, TFDS through `tfds.data_source` (array_record, no TensorFlow needed).
Errors are raised when `iter_records` / `iter_documents` is called, not at the first `next()`.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import glob
import gzip
import io
import itertools
import json
import logging
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

FORMATS = ("txt", "jsonl", "json", "csv", "tsv", "parquet")
LOCAL_FILES_HINT = (
    "Pass local files instead: --config.data.train_files='path/*.jsonl.gz' "
    "(txt, jsonl/json, csv, tsv, parquet; gz or not)."
)
JSON_EXPECTED = "JSON Lines (one object per line) or a JSON array of objects expected"
# Wikipedia-sized fields exceed csv's default 128 KiB limit; one limit for every csv reader
# here (it is process-wide), the largest a C long holds on every platform.
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)

log = logging.getLogger(__name__)


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


@contextlib.contextmanager
def file_errors(path: str) -> Iterator[None]:
    """Turns the errors of a file that is not what its name says (not gzip, truncated, not
    UTF-8) into one ValueError naming it, instead of a traceback from the codec."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text ({e.reason}, byte {e.object[e.start : e.start + 1]!r}): "
            "UTF-8 is expected; convert the file (e.g. iconv -f latin1 -t utf-8)."
        ) from e
    except gzip.BadGzipFile as e:
        raise ValueError(
            f"{path}: not a gzip file ({e}): gzip it, or drop the .gz from its name."
        ) from e
    except (EOFError, zlib.error) as e:
        raise ValueError(
            f"{path}: truncated or corrupt compressed data ({type(e).__name__}: {e}); "
            "re-create the file."
        ) from e


def csv_rows(f: Iterable[str], path: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-empty row of an RFC-quoted csv / tsv file.

    Strict, so a quote left open is an error at its row instead of swallowing the rows after
    it into one field."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ValueError(
                f"{path}:{line}: cannot read the row starting here ({e}; unbalanced quote?)"
            ) from None
        if row:
            yield line, row
        line = reader.line_num + 1


def json_array(f: io.TextIOBase, path: str) -> tuple[list | None, Iterable[str]]:
    """Reads a `.json` file that is one JSON array (`df.to_json(orient="records")`, read
    whole): (records, ()). Anything else is JSON Lines: (None, lines), the lines read to find
    out included."""
    head: list[str] = []
    if path.removesuffix(".gz").lower().endswith(".json"):
        for line in f:
            head.append(line)
            if line.strip():
                break
        if head and head[-1].lstrip().startswith("["):
            try:
                return json.loads("".join(head) + f.read()), ()
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{e.lineno}: not valid JSON ({e.msg}); {JSON_EXPECTED}."
                ) from None
    return None, itertools.chain(head, f)


def _iter_json(path: str) -> Iterator[tuple[int, dict]]:
    with open_text(path) as f:
        array, lines = json_array(f, path)
        if array is not None:
            for n, record in enumerate(array, 1):
                if not isinstance(record, dict):
                    raise ValueError(
                        f"{path}: element {n} of the array is a {type(record).__name__}; "
                        f"{JSON_EXPECTED}."
                    )
                yield n, record
            return
        for line_number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{line_number}: not valid JSON ({e}); {JSON_EXPECTED}."
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{line_number}: expected a JSON object, got "
                    f"{type(record).__name__}; {JSON_EXPECTED}."
                )
            yield line_number, record


def _iter_delimited(path: str, delimiter: str) -> Iterator[tuple[int, dict]]:
    # RFC quoting for tsv too: it is what pandas and spreadsheets write for fields holding
    # tabs, newlines or quotes.
    malformed, first = 0, 0
    try:
        with open_text(path) as f:
            rows = csv_rows(f, path, delimiter)
            header = next(rows, (0, []))[1]
            for line, row in rows:
                # More or fewer fields than the header: a stray delimiter or a broken line.
                if len(row) != len(header):
                    malformed, first = malformed + 1, first or line
                    continue
                yield line, dict(zip(header, row, strict=True))
    finally:
        if malformed:
            log.warning(
                "%s: skipped %d malformed rows (not %d fields as in the header), first at line %d",
                path,
                malformed,
                len(header),
                first,
            )


def _iter_parquet(path: str) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    try:
        with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    n += 1
                    yield n, record
    except pa.ArrowException as e:
        raise ValueError(
            f"{path}: not a readable parquet file ({type(e).__name__}: {e})"
            + (f" at row {n + 1}" if n else "")
        ) from e


def _iter_txt_lines(path: str) -> Iterator[tuple[int, dict]]:
    with open_text(path) as f:
        for line_number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield line_number, {"text": line}


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


def _iter_file_records(path: str) -> Iterator[tuple[int, dict]]:
    """(line, or row of a parquet file / element of a JSON array, record) of one file."""
    fmt = file_format(path)
    with file_errors(path):
        if fmt == "txt":
            yield from _iter_txt_lines(path)
        elif fmt in ("jsonl", "json"):
            yield from _iter_json(path)
        elif fmt in ("csv", "tsv"):
            yield from _iter_delimited(path, "," if fmt == "csv" else "\t")
        else:
            yield from _iter_parquet(path)


# ---- Hugging Face hub -----------------------------------------------------------------------


def close_match(name: str, names: Iterable[str]) -> str:
    """`names`' closest spelling of a misspelt `name` ('' when none is close)."""
    matches = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
    return matches[0] if matches else ""


def _unreachable(name: str, error: BaseException, hint: str) -> SourceUnavailableError:
    cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return SourceUnavailableError(
        f"Could not reach the Hugging Face hub for dataset {name!r} (offline?; "
        f"{type(error).__name__}: {cause}). {hint}"
    )


def _hub_records(
    name: str, split: str, config_name: str, streaming: bool, hint: str
) -> Iterator[dict]:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        dataset = datasets.load_dataset(name, config_name or None, split=split, streaming=streaming)
    except (ConnectionError, DatasetNotFoundError, FileNotFoundError, OSError) as e:
        raise _unreachable(name, e, hint) from e
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


def _tfds_records(name: str, split: str, config_name: str, hint: str) -> Iterator[dict]:
    import tensorflow_datasets as tfds

    full_name = f"{name}/{config_name}" if config_name else name
    # Read at call time (tfds reads TFDS_DATA_DIR once, at import).
    data_dir = os.environ.get("TFDS_DATA_DIR") or None
    try:
        builder = tfds.builder(full_name, data_dir=data_dir)
    except Exception as e:
        raise SourceUnavailableError(
            f"TensorFlow Datasets could not find or load {full_name!r} "
            f"({type(e).__name__}: {e}). {hint}"
        ) from e
    if not builder.is_prepared():
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception as e:
            raise SourceUnavailableError(
                f"TFDS dataset {full_name!r} is not prepared in {builder.data_dir!r} and could "
                f"not be downloaded (offline?; {type(e).__name__}: {e}). {hint}"
            ) from e
    file_format_name = str(getattr(builder.info.file_format, "value", builder.info.file_format))
    if file_format_name != "array_record":
        raise SourceUnavailableError(
            f"TFDS dataset {full_name!r} is prepared as {file_format_name} in "
            f"{builder.data_dir!r}, which is not random-access without TensorFlow; re-prepare "
            f"it with `tfds build {full_name} --file_format=array_record`. {hint}"
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
    hint: str = LOCAL_FILES_HINT,
) -> Iterator[dict]:
    """Records (dicts) from local `files` (globs, comma-separated) or a named dataset.

    `name` is a Hugging Face hub dataset ('stas/openwebtext-10k') or 'tfds:<name>'. For local
    files `split` is ignored (the files are the split); `.txt` gives one {"text": line} per
    non-empty line. Raises FileNotFoundError for a glob without matches and
    SourceUnavailableError when a named dataset cannot be reached (its message ends with
    `hint`, how to use local files instead); a bad file raises a ValueError naming it.
    """
    if files:
        paths = expand_files(files)
        for path in paths:
            file_format(path)  # unsupported types fail now, not mid-stream
        return (record for path in paths for _, record in _iter_file_records(path))
    if not name:
        raise ValueError("Give a dataset: either files='path/*.jsonl.gz' or name='hub/dataset'.")
    if name.startswith("tfds:"):
        return _tfds_records(name[len("tfds:") :], split, config_name, hint)
    return _hub_records(name, split, config_name, streaming, hint)


def _record_text(record: dict, text_field: str, where: str, n: int) -> str:
    try:
        value = record[text_field]
    except KeyError:
        raise ValueError(
            f"{where}:{n}: record has no field {text_field!r}; fields present: {sorted(record)}. "
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
                    with file_errors(path):
                        yield from _iter_txt_blocks(path)
                else:
                    for n, record in _iter_file_records(path):
                        yield _record_text(record, text_field, path, n)

    else:
        records = iter_records(name=name, split=split, config_name=config_name)

        def texts() -> Iterator[str]:
            for n, record in enumerate(records, 1):
                yield _record_text(record, text_field, name, n)

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
