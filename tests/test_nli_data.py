"""NLI / STS pair readers: label mapping, irregular local formats, presets, hub errors."""

import csv
import gzip
import json
import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from jaxbert.data import nli

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason="shared/data not staged here")


def write(path, text, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)
    return str(path)


def test_label_names_match_case_insensitively_and_no_gold_is_dropped(tmp_path):
    path = write(
        tmp_path / "pairs.csv",
        "pairID,sentence1,sentence2,label\n"
        "1,A man sleeps.,A man rests.,ENTAILMENT\n"
        '2,"A dog, wet.","He said ""hi"".",Neutral\n'
        "3,A cat.,No cat.,contradiction\n"
        "4,Two men.,Nobody.,-\n"
        "5,Two men.,Three men.,\n",
    )
    data = nli.read_pairs(nli.PairSource(name="t", files=path))
    assert data.labels.tolist() == [0, 1, 2]
    assert data.labels.dtype == np.int32
    assert data.label_names == nli.NLI_LABELS
    assert data.sentence1[1] == "A dog, wet." and data.sentence2[1] == 'He said "hi".'
    assert data.stats == dict(read=5, kept=3, dropped_no_gold=2, malformed=0, empty=0)


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = write(tmp_path / "bom.csv.gz", "\ufeffsentence1,sentence2,label\nA.,B.,neutral\n", True)
    data = nli.read_pairs(nli.PairSource(name="t", files=path))
    assert data.sentence1 == ["A."] and data.labels.tolist() == [1]


def test_numeric_codes_go_through_label_map_in_a_headerless_quoted_tsv(tmp_path):
    path = write(
        tmp_path / "subset.tsv",
        '3\t3\t"A sign reading ""Stop."""\tA sign.\n'
        "1\t1\tA girl runs.\tA girl runs home.\n"
        "2\t2\tA girl runs.\tA girl sits.\n",
    )
    source = nli.PairSource(
        name="subset",
        files=path,
        header=False,
        sentence1=2,
        sentence2=3,
        label=0,
        label_map=nli.SNLI_SUBSET_LABEL_MAP,
    )
    data = nli.read_pairs(source)
    assert [data.label_names[i] for i in data.labels] == ["entailment", "neutral", "contradiction"]
    assert data.sentence1[0] == 'A sign reading "Stop."'


def test_jsonl_gz_with_hub_codes_drops_minus_one(tmp_path):
    rows = [
        {"premise": "A b.", "hypothesis": "C d.", "label": 2},
        {"premise": "A b.", "hypothesis": "E f.", "label": -1},
        {"premise": "A b.", "hypothesis": "G h.", "label": 0},
    ]
    path = write(tmp_path / "x.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows), True)
    source = nli.resolve(path, sentence1="premise", sentence2="hypothesis")
    data = nli.read_pairs(dict(source.__dict__, label_map=nli.HF_NLI_LABEL_MAP))
    assert data.labels.tolist() == [2, 0]
    assert data.stats["dropped_no_gold"] == 1


def test_unknown_label_is_an_error_naming_row_and_known_labels(tmp_path):
    path = write(tmp_path / "p.csv", "sentence1,sentence2,label\na,b,neutral\nc,d,maybe\n")
    with pytest.raises(ValueError, match=r"unknown label 'maybe' at .*p.csv row 3.*entailment"):
        nli.read_pairs(nli.resolve(path))
    with pytest.raises(ValueError, match=r"label_map maps '7' to 'yes'"):
        nli.read_pairs(nli.resolve(path, label_map="7:yes"))


def test_missing_column_is_an_error_listing_the_columns(tmp_path):
    path = write(tmp_path / "p.csv", "premise,hypothesis,gold\na,b,neutral\n")
    with pytest.raises(ValueError, match=r"missing column 'sentence1'.*\['premise', 'hyp"):
        nli.read_pairs(nli.resolve(path))
    jsonl = write(tmp_path / "p.jsonl", '{"sentence1": "a", "sentence2": "b"}\n')
    with pytest.raises(ValueError, match=r"missing column 'label'; columns present"):
        nli.read_pairs(nli.resolve(jsonl))
    with pytest.raises(ValueError, match="integer indices"):
        nli.read_pairs(nli.resolve(path, header=False))


def test_malformed_and_empty_rows_are_counted_and_warned_once(tmp_path, caplog):
    path = write(
        tmp_path / "p.csv",
        "sentence1,sentence2,label\n"
        "a,b,neutral\n"
        "a,b\n"  # too few columns
        "a,b,neutral,extra\n"  # too many for the header
        " ,b,neutral\n"  # empty premise
        "c,d,entailment\n",
    )
    with caplog.at_level(logging.WARNING, logger="jaxbert.data.nli"):
        data = nli.read_pairs(nli.resolve(path))
    assert len(data) == 2
    assert data.stats == dict(read=5, kept=2, dropped_no_gold=0, malformed=2, empty=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "p.csv:3" in warnings[0]


def test_sts_noquote_keeps_quotes_ignores_extra_columns_and_scales_scores(tmp_path):
    path = write(
        tmp_path / "sts-dev.csv",
        'main\tf\t2012\t0001\t5.000\t"Then he left.\tHe came back.\r\n'
        "main\tf\t2012\t0002\t2.5\tA b.\tC d.\textra\tcolumns\r\n"
        "main\tf\t2012\t0003\tabc\tA b.\tC d.\r\n"  # bad score
        "main\tf\t2012\t0004\t1.0\tA b.\r\n",  # missing sentence2
    )
    data = nli.read_pairs(nli.resolve(path))  # the file name selects the STS-B layout
    assert data.label_names == () and data.labels.dtype == np.float32
    np.testing.assert_allclose(data.labels, [1.0, 0.5])
    assert data.sentence1[0] == '"Then he left.' and data.sentence2[0] == "He came back."
    assert data.stats["malformed"] == 2
    with pytest.raises(ValueError, match="label_names only apply"):
        nli.read_pairs(nli.resolve(path), label_names=("a", "b"))


def test_same_file_reads_as_nli_or_sts(tmp_path):
    path = write(
        tmp_path / "SICK_train.txt",
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
        "1\tA b.\tC d.\t4.5\tNEUTRAL\n"
        "2\tA b.\tA b!\t5\tENTAILMENT\n",
    )
    assert nli.read_pairs(nli.resolve(path)).labels.tolist() == [1, 0]
    sts = dict(label="relatedness_score", kind="sts", score_range=(1.0, 5.0))
    scores = nli.read_pairs(nli.resolve(path, **sts))
    np.testing.assert_allclose(scores.labels, [0.875, 1.0])  # 1..5 mapped to 0..1


def test_max_rows_and_a_file_with_only_bad_rows(tmp_path):
    rows = "".join(f"s{i},t{i},neutral\n" for i in range(10))
    path = write(tmp_path / "p.csv", "sentence1,sentence2,label\n" + rows)
    assert len(nli.read_pairs(path, max_rows=4)) == 4
    bad = write(tmp_path / "bad.csv", "sentence1,sentence2,label\na\nb\n")
    with pytest.raises(ValueError, match="no usable pair among 2 rows"):
        nli.read_pairs(bad)


def test_mix_needs_matching_label_names():
    def dataset(name, labels, names=nli.NLI_LABELS):
        n = len(labels)
        stats = dict(read=n, kept=n)
        return nli.PairDataset(["p"] * n, ["h"] * n, np.array(labels, np.int32), names, name, stats)

    mixed = nli.mix([dataset("snli", [0, 1]), dataset("mnli", [2])])
    assert len(mixed) == 3 and mixed.labels.tolist() == [0, 1, 2]
    assert mixed.name == "snli+mnli" and mixed.stats["kept"] == 3
    with pytest.raises(ValueError, match="different label names"):
        nli.mix([dataset("snli", [0]), dataset("x", [0], names=("no", "yes"))])


def test_entailment_pairs_and_triplets():
    premises = ["P1", "P1", "P1", "P2", "P2", "P3 ", "P3", "P3"]
    hypotheses = ["e1", "n1", "c1", "e2", "n2", "e3", "e3b", "c3"]
    labels = np.array([0, 1, 2, 0, 1, 0, 0, 2], np.int32)
    data = nli.PairDataset(premises, hypotheses, labels, nli.NLI_LABELS, "toy", {})
    pairs = nli.entailment_pairs(data)
    assert pairs.sentence2 == ["e1", "e2", "e3", "e3b"]
    triplets = nli.entailment_triplets(data)
    assert triplets.sentence2 == ["e1", "e3", "e3b"]
    assert triplets.sentence3 == ["c1", "c3", "c3"]
    assert triplets.stats == {"read": 8, "kept": 3, "premises": 2}
    with pytest.raises(ValueError, match="no 'entailment' label"):
        nli.entailment_pairs(nli.PairDataset(["a"], ["b"], np.zeros(1), (), "sts", {}))


def test_resolve_presets_paths_hub_and_tfds(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXBERT_DATA", str(tmp_path))
    snli = nli.resolve("snli_train_subset")
    assert snli.files == os.path.join(str(tmp_path), "snli", "snli_train_subset_18k.tsv")
    assert nli.resolve("stsb_dev", root="/d").files == os.path.join(
        "/d", "stsbenchmark/sts-dev.csv"
    )
    assert (
        nli.resolve("nyu-mll/multi_nli", split="validation_matched").split == "validation_matched"
    )
    assert nli.resolve("snli").label_map == nli.HF_NLI_LABEL_MAP
    assert nli.resolve("sentence-transformers/stsb").kind == "sts"
    assert nli.resolve("tfds:multi_nli").sentence1 == "premise"
    assert nli.resolve("someone/pairs").name == "someone/pairs"
    with pytest.raises(FileNotFoundError, match="JAXBERT_DATA"):
        nli.read_pairs("snli_dev")


@pytest.fixture
def fake_sources(monkeypatch):
    """Stands in for jaxbert.data.sources: records of a hub/TFDS dataset, or an error."""
    calls = []

    class SourceUnavailableError(RuntimeError):
        pass

    def iter_records(name="", files="", split="train", config_name="", streaming=True, hint=""):
        calls.append(dict(name=name, split=split))
        if name == "offline/x":
            raise SourceUnavailableError("hub unreachable; pass local files with files=...")
        yield {"premise": b"A b.", "hypothesis": b"C d.", "label": 1}
        yield {"premise": "A b.", "hypothesis": "E f.", "label": -1}

    module = types.SimpleNamespace(
        iter_records=iter_records, SourceUnavailableError=SourceUnavailableError
    )
    monkeypatch.setattr(nli.sources, "iter_records", iter_records)
    monkeypatch.setattr(nli.sources, "SourceUnavailableError", SourceUnavailableError)
    return module, calls


def test_hub_records_map_columns_decode_bytes_and_drop_no_gold(fake_sources):
    _, calls = fake_sources
    data = nli.read_pairs(nli.resolve("tfds:snli", split="validation"))
    assert data.sentence1 == ["A b."] and data.labels.tolist() == [1]
    assert data.stats["dropped_no_gold"] == 1
    assert calls == [dict(name="tfds:snli", split="validation")]


def test_hub_failure_propagates(fake_sources):
    module, _ = fake_sources
    with pytest.raises(module.SourceUnavailableError, match="local files"):
        nli.read_pairs(nli.resolve("offline/x"))


def test_hub_name_offline_raises_source_unavailable(monkeypatch):
    sources = pytest.importorskip("jaxbert.data.sources")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(sources.SourceUnavailableError, match="local files"):
        nli.read_pairs("snli")


REAL_COUNTS = {
    "snli_dev": (9842, 158),
    "mnli_dev_matched": (9815, 185),
    "mnli_dev_mismatched": (9832, 168),
    "snli_train_subset": (18000, 0),
    "stsb_train": (5749, 0),
    "stsb_dev": (1500, 0),
    "sick_train": (4500, 0),
    "sick_trial_sts": (500, 0),
}


@needs_data
@pytest.mark.parametrize("preset", sorted(REAL_COUNTS))
def test_staged_files_read_with_official_counts(preset):
    data = nli.read_pairs(nli.resolve(preset, root=DATA))
    kept, no_gold = REAL_COUNTS[preset]
    assert (data.stats["kept"], data.stats["dropped_no_gold"]) == (kept, no_gold)
    assert data.stats["malformed"] == data.stats["empty"] == 0
    if preset == "snli_train_subset":
        assert data.label_counts() == dict(neutral=5899, contradiction=6086, entailment=6015)
    if not data.is_classification:
        assert 0.0 <= data.labels.min() and data.labels.max() <= 1.0


def test_an_unbalanced_quote_is_an_error_not_swallowed_rows(tmp_path):
    rows = "".join(f"s{i},t{i},neutral\n" for i in range(5))
    path = write(
        tmp_path / "q.csv", "sentence1,sentence2,label\na,b,neutral\n" + '"Open,c,d\n' + rows
    )
    with pytest.raises(ValueError, match=r"q\.csv:3: .*unbalanced quote\?"):
        nli.read_pairs(path)


def test_a_field_over_the_csv_limit_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path / "big.csv", "sentence1,sentence2,label\n" + "x" * 100 + ",b,neutral\n")
    monkeypatch.setattr(nli.sources, "CSV_FIELD_LIMIT", 50)
    try:
        with pytest.raises(ValueError, match=r"big\.csv:2: .*field larger than field limit"):
            nli.read_pairs(path)
    finally:
        monkeypatch.undo()
    # One (process-wide) limit for the pair and the text readers: the pair reader used to set
    # its own, of 16 MiB.
    long = "x" * ((1 << 24) + 1)
    data = nli.read_pairs(
        write(tmp_path / "long.csv", f"sentence1,sentence2,label\n{long},b,neutral\n")
    )
    assert data.sentence1 == [long]
    assert csv.field_size_limit() == 2**31 - 1


@pytest.mark.parametrize("text", ["", "\ufeff", "sentence1,sentence2,label\n", "\n\n"])
def test_an_empty_or_header_only_file_has_no_pairs(tmp_path, text):
    path = write(tmp_path / "p.csv", text)
    with pytest.raises(ValueError, match=r"p\.csv( is empty|: no pairs \(an empty file)"):
        nli.read_pairs(path)
    with pytest.raises(ValueError, match=r"p\.jsonl: no pairs \(an empty file, or a header only"):
        nli.read_pairs(write(tmp_path / "p.jsonl", text.replace("sentence1,sentence2,label", "")))
    with pytest.raises(ValueError, match=r"p\.csv is empty"):
        nli.read_pairs(write(tmp_path / "p.csv", ""))


def test_integer_labels_written_as_floats_and_nan(tmp_path):
    # What pandas writes for an integer label column with a missing value.
    header = "sentence1,sentence2,label\n"
    path = write(tmp_path / "f.csv", header + "a,b,0.0\nc,d,2.0\ne,f,\ng,h,nan\n")
    data = nli.read_pairs(nli.resolve(path, label_map=nli.HF_NLI_LABEL_MAP))
    assert data.labels.tolist() == [0, 2] and data.stats["dropped_no_gold"] == 2
    rows = [{"sentence1": "a", "sentence2": "b", "label": v} for v in (1.0, float("nan"), 2)]
    jsonl = write(tmp_path / "f.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = nli.read_pairs(nli.resolve(jsonl, label_map=nli.HF_NLI_LABEL_MAP))
    assert data.labels.tolist() == [1, 2] and data.stats["dropped_no_gold"] == 1
    # Numeric codes without a label_map: say which one the hub datasets use.
    with pytest.raises(
        ValueError,
        match=r"unknown label '0\.0'.*'0:entailment,1:neutral,2:co.*"
        r"--config.data.label_map=... \(fine-tuning\), --label_map=",
    ):
        nli.read_pairs(path)
    # default_label_map (config.data.label_map) serves sources without a map of their own ...
    data = nli.read_pairs(nli.resolve(path, default_label_map=nli.HF_NLI_LABEL_MAP))
    assert data.labels.tolist() == [0, 2]
    # ... and leaves the presets' own codes alone (the SNLI subset's 1/2/3).
    subset = nli.resolve("snli_train_subset", default_label_map=nli.HF_NLI_LABEL_MAP)
    assert subset.label_map == nli.SNLI_SUBSET_LABEL_MAP
    fraction = write(tmp_path / "g.csv", header + "a,b,0.5\n")
    with pytest.raises(ValueError, match=r"unknown label '0\.5'"):
        nli.read_pairs(nli.resolve(fraction, label_map=nli.HF_NLI_LABEL_MAP))


def test_a_json_array_of_pairs(tmp_path):
    rows = [{"sentence1": "A b.", "sentence2": "C d.", "label": "neutral"}, 7]
    path = write(tmp_path / "pairs.json.gz", json.dumps(rows), compress=True)  # orient="records"
    data = nli.read_pairs(path)
    assert data.sentence1 == ["A b."] and data.labels.tolist() == [1]
    assert data.stats["malformed"] == 1


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("plain.csv.gz", b"sentence1,sentence2,label\na,b,neutral\n", "not a gzip file"),
        ("cut.jsonl.gz", gzip.compress(b'{"sentence1": "a"}\n' * 200)[:40], "truncated or corrupt"),
        ("latin1.csv", "sentence1,sentence2,label\ncaf\xe9,b,neutral\n".encode("latin-1"), "UTF-8"),
        ("bad.parquet", b"not parquet at all", "not a readable parquet"),
    ],
)
def test_a_bad_file_is_one_error_naming_it(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"{name}: .*{message}"):
        nli.read_pairs(str(tmp_path / name))


def test_a_misspelt_preset_says_which_was_meant_and_how_to_pass_pairs(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(nli.sources.SourceUnavailableError) as info:
        nli.read_pairs("snli_devv")
    message = str(info.value)
    assert "did you mean 'snli_dev'? (local presets: snli_train_subset," in message.lower()
    assert "--config.data.train=<preset or file>" in message and "--data" in message
    assert "train_files" not in message  # a pretraining field
    with pytest.raises(nli.sources.SourceUnavailableError) as info:
        nli.read_pairs("snli")  # a real hub name: nothing to correct
    assert "did you mean" not in str(info.value).lower()
    assert "--config.data.train=<preset or file>" in str(info.value)


def test_evaluate_script_reads_data_as_the_task_kind(tmp_path):
    # scripts/evaluate.py --task stsb --data my_sts.csv: scores, not NLI labels. The model and
    # the report are stubbed: only what the script reads matters here.
    path = write(tmp_path / "my_sts.csv", "sentence1,sentence2,label\na,b,0.8\nc,d,4.5\n")
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "evaluate.py")
    stub = f"""
import runpy, sys, types
from jaxbert import evaluate, serve
seen = []
serve.SentenceModel.load = staticmethod(lambda path: types.SimpleNamespace(source=path))
evaluate.evaluate_dataset = lambda model, dataset: seen.append(dataset) or {{}}
evaluate.format_report = lambda report: ""
evaluate.save_report = lambda report, out, name: out
sys.argv = ["evaluate.py", "--model=m", "--task=stsb", "--data={path}", "--out={tmp_path}"]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print("LABELS", seen[0].label_names, seen[0].labels.tolist())
"""
    env = dict(os.environ, JAXBERT_COMPILATION_CACHE="")
    done = subprocess.run([sys.executable, "-c", stub], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LABELS () [0.1599" in done.stdout  # STS-B's 0..5 scale, as the stsb presets
