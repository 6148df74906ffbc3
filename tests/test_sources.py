import csv
import functools
import gzip
import json
import logging
import re

import numpy as np
import pytest

from jaxbert.data import sources
from jaxbert.data.sources import SourceUnavailableError, iter_documents, iter_records

RECORDS = [
    {"text": "First document, first line.", "label": "a"},
    {"text": "Second document.", "label": "b"},
    {"text": 'Third, with "quotes" and a tab-free comma.', "label": "c"},
]


def _write(path, content: str):
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _jsonl(records):
    return "".join(json.dumps(r) + "\n" for r in records)


def _delimited(records, delimiter):
    lines = [delimiter.join(records[0])]
    for r in records:
        if delimiter == ",":
            lines.append(",".join(csv_quote(v) for v in r.values()))
        else:
            lines.append("\t".join(r.values()))
    return "\n".join(lines) + "\n"


def csv_quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n') else value


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv"])
def test_text_formats_roundtrip(tmp_path, fmt, gz):
    content = (
        _jsonl(RECORDS) if fmt in ("jsonl", "json") else _delimited(RECORDS, ",\t"[fmt == "tsv"])
    )
    path = _write(tmp_path / f"data.{fmt}{'.gz' if gz else ''}", content)
    assert list(iter_records(files=str(path))) == RECORDS
    assert list(iter_documents(files=str(path))) == [r["text"] for r in RECORDS]


@pytest.mark.parametrize("gz", [False, True])
def test_parquet(tmp_path, gz):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    if gz:
        gz_path = tmp_path / "data.parquet.gz"
        gz_path.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        path = gz_path
    assert list(iter_records(files=str(path))) == RECORDS


def test_csv_long_fields_and_embedded_newlines(tmp_path):
    long_text = "word " * 100_000  # over csv's default 128 KiB field limit
    path = tmp_path / "long.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerow([long_text])
        writer.writerow(["line one\nline two"])
    assert list(iter_documents(files=str(path))) == [long_text, "line one\nline two"]


@pytest.mark.parametrize("gz", [False, True])
def test_txt_lines_and_blank_line_documents(tmp_path, gz):
    content = "doc one line one\ndoc one line two\n\n\n  \ndoc two\n\ndoc three a\ndoc three b"
    path = _write(tmp_path / f"corpus.txt{'.gz' if gz else ''}", content)
    assert [r["text"] for r in iter_records(files=str(path))] == [
        "doc one line one",
        "doc one line two",
        "doc two",
        "doc three a",
        "doc three b",
    ]
    assert list(iter_documents(files=str(path))) == [
        "doc one line one\ndoc one line two",
        "doc two",
        "doc three a\ndoc three b",
    ]
    assert list(iter_documents(files=str(path), max_docs=2)) == [
        "doc one line one\ndoc one line two",
        "doc two",
    ]


def test_globs_sorted_and_comma_separated(tmp_path):
    for name in ["b.jsonl", "a.jsonl", "c.jsonl.gz"]:
        _write(tmp_path / name, _jsonl([{"text": name}]))
    _write(tmp_path / "z.txt", "from txt\n")
    texts = list(iter_documents(files=f"{tmp_path}/*.jsonl*, {tmp_path}/z.txt"))
    assert texts == ["a.jsonl", "b.jsonl", "c.jsonl.gz", "from txt"]


def test_tiny_corpus_fixture_formats_agree(tiny_corpus_dir):
    from_txt = list(iter_documents(files=str(tiny_corpus_dir / "corpus.txt")))
    from_jsonl = list(iter_documents(files=str(tiny_corpus_dir / "corpus.jsonl")))
    assert len(from_txt) == 40
    assert from_txt == from_jsonl


def test_missing_file_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing_here" / "*.jsonl")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        iter_records(files=pattern)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        iter_documents(files=str(tmp_path / "missing.txt"))


def test_unsupported_extension(tmp_path):
    path = _write(tmp_path / "data.xml", "<a/>")
    with pytest.raises(ValueError, match="Unsupported file type 'xml'"):
        iter_records(files=str(path))


def test_nothing_given():
    with pytest.raises(ValueError, match="files=.*name="):
        iter_records()


def test_missing_text_field_lists_fields(tmp_path):
    path = _write(tmp_path / "data.jsonl", _jsonl([{"sentence": "x", "label": 1}]))
    with pytest.raises(ValueError, match=r"no field 'text'.*\['label', 'sentence'\]"):
        list(iter_documents(files=str(path)))
    assert list(iter_documents(files=str(path), text_field="sentence")) == ["x"]


def test_empty_documents_skipped(tmp_path):
    path = _write(tmp_path / "data.jsonl", _jsonl([{"text": ""}, {"text": "  "}, {"text": None}]))
    assert list(iter_documents(files=str(path))) == []


def test_bad_json_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "data.jsonl", '{"text": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"data.jsonl:2"):
        list(iter_records(files=str(path)))


def test_unreachable_hub_dataset_says_how_to_pass_local_files():
    # conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, so this fails at once.
    with pytest.raises(SourceUnavailableError, match="local files") as info:
        iter_records(name="snli")
    assert "'snli'" in str(info.value)
    with pytest.raises(SourceUnavailableError, match="local files"):
        iter_documents(name="stas/openwebtext-10k")


def test_unprepared_tfds_dataset(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(SourceUnavailableError, match="local files"):
        iter_records(name="tfds:definitely_not_a_dataset_xyz")


@functools.cache
def _tiny_tfds_class():
    """A 5-record TFDS dataset (defined once: TFDS registers builder classes by name)."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class JaxbertTinyText(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({"text": tfds.features.Text(), "label": np.int64})
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(5):
                yield i, {"text": f"sentence number {i}.", "label": i}

    return JaxbertTinyText


def test_tfds_array_record_source(tmp_path, monkeypatch):
    _tiny_tfds_class()(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    records = sorted(iter_records(name="tfds:jaxbert_tiny_text"), key=lambda r: r["label"])
    assert records == [{"text": f"sentence number {i}.", "label": i} for i in range(5)]
    assert sorted(iter_documents(name="tfds:jaxbert_tiny_text"))[0] == "sentence number 0."


def test_tfds_tfrecord_source_is_a_clear_error(tmp_path, monkeypatch):
    # Writing TFRecords needs TensorFlow, so mark an array_record dataset as TFRecord instead.
    _tiny_tfds_class()(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    (info_path,) = tmp_path.glob("jaxbert_tiny_text/*/dataset_info.json")
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(SourceUnavailableError, match="not random-access without TensorFlow"):
        iter_records(name="tfds:jaxbert_tiny_text")


@pytest.mark.parametrize("name", ["bom.txt", "bom.jsonl.gz"])
def test_a_byte_order_mark_is_not_read_into_the_first_document(tmp_path, name):
    # Files saved by spreadsheet and Windows editors often start with U+FEFF.
    first, second = "Alpha beta gamma.", "Second document."
    if ".jsonl" in name:
        text = _jsonl([{"text": first}, {"text": second}])
    else:
        text = f"{first}\n\n{second}\n"
    _write(tmp_path / name, "\ufeff" + text)
    documents = list(iter_documents(files=str(tmp_path / name)))
    assert documents[0] == first


def test_tsv_is_rfc_quoted_as_pandas_writes_it(tmp_path):
    # pandas / spreadsheets quote fields holding tabs, newlines or quotes, even in a tsv.
    texts = ["First doc.\nHas two lines.", "Second, with a\ttab.", 'Third "quoted" doc.']
    with open(tmp_path / "t.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts))
    assert list(iter_documents(files=str(tmp_path / "t.tsv"))) == texts


def test_rows_with_the_wrong_number_of_fields_are_skipped_and_warned_once(tmp_path, caplog):
    path = _write(tmp_path / "r.csv", "id,text\n1,good one\n2\n3,a,stray\n4,good two\n5,x,y\n")
    with caplog.at_level(logging.WARNING, logger="jaxbert.data.sources"):
        assert list(iter_documents(files=str(path))) == ["good one", "good two"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "skipped 3 malformed rows" in warning and "first at line 3" in warning


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_an_unbalanced_quote_is_an_error_at_its_row(tmp_path, fmt):
    sep = "," if fmt == "csv" else "\t"
    text = f'id{sep}text\n1{sep}fine\n2{sep}"Opened, never closed\n3{sep}swallowed\n4{sep}too\n'
    path = _write(tmp_path / f"q.{fmt}", text)
    with pytest.raises(ValueError, match=rf"q\.{fmt}:3: .*unbalanced quote\?"):
        list(iter_documents(files=str(path)))


def test_a_field_over_the_csv_limit_names_the_file(tmp_path, monkeypatch):
    path = _write(tmp_path / "big.csv", "text\nshort\n" + "x" * 100 + "\n")
    monkeypatch.setattr(sources, "CSV_FIELD_LIMIT", 50)
    try:
        with pytest.raises(ValueError, match=r"big\.csv:3: .*field larger than field limit"):
            list(iter_documents(files=str(path)))
    finally:
        csv.field_size_limit(2**31 - 1)  # process-wide; the next reader sets it again anyway


def _truncated_gz(path):
    path.write_bytes(gzip.compress(_jsonl(RECORDS * 50).encode())[:60])


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("plain.jsonl.gz", lambda p: p.write_text(_jsonl(RECORDS)), "not a gzip file"),
        ("cut.jsonl.gz", _truncated_gz, "truncated or corrupt"),
        ("latin1.txt", lambda p: p.write_bytes("caf\xe9 ol\xe9\n".encode("latin-1")), "UTF-8"),
        ("latin1.csv", lambda p: p.write_bytes("text\ncaf\xe9\n".encode("latin-1")), "UTF-8"),
        ("bad.parquet", lambda p: p.write_bytes(b"not parquet at all"), "not a readable parquet"),
        ("mixed.jsonl", lambda p: p.write_text('{"text": "a."}\n\n{"title": "b"}\n'), ":3: record"),
    ],
)
def test_a_bad_file_is_one_error_naming_it(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / name))}.*{message}"):
        list(iter_documents(files=str(tmp_path / name)))


@pytest.mark.parametrize("name", ["records.json", "records.json.gz"])
def test_a_json_array_of_records(tmp_path, name):
    # What df.to_json(orient="records") writes, after a blank line for good measure.
    _write(tmp_path / name, "\n  " + json.dumps(RECORDS, indent=1))
    assert list(iter_records(files=str(tmp_path / name))) == RECORDS
    assert list(iter_documents(files=str(tmp_path / name))) == [r["text"] for r in RECORDS]
    _write(tmp_path / "wrapped.json", json.dumps({"data": RECORDS}, indent=2))
    with pytest.raises(ValueError, match="JSON Lines .*or a JSON array of objects"):
        list(iter_records(files=str(tmp_path / "wrapped.json")))
    _write(tmp_path / "strings.json", '["a", "b"]')
    with pytest.raises(ValueError, match="element 1 of the array is a str"):
        list(iter_records(files=str(tmp_path / "strings.json")))
