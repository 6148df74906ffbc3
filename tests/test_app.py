"""The Streamlit app (app.py) through streamlit.testing's AppTest, against a tiny model trained
in a fixture: every section, every bad-input case and the no-model page; plus the app's helpers
(jaxbert.app_support) directly."""

import functools
import json
import os
import pathlib
import random

import numpy as np
import pytest
import streamlit as st
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest

from jaxbert import app_support, evaluate, finetune, hf, run_card
from jaxbert.app_support import InputError
from jaxbert.configs import finetune_config
from jaxbert.data import nli
from jaxbert.serve import SentenceModel

APP = str(pathlib.Path(__file__).resolve().parents[1] / "app.py")

SUBJECTS = ["a man", "a woman", "the child", "two dogs", "a musician", "the chef"]
ACTIONS = ["plays a guitar", "cooks dinner", "runs outside", "reads a book", "sleeps"]
LABELS = ("entailment", "neutral", "contradiction")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _pair(rng, label):
    subject, action = rng.choice(SUBJECTS), rng.choice(ACTIONS)
    hypothesis = {
        "entailment": f"{subject} {action}.",
        "neutral": f"{subject} {action} at night.",
        "contradiction": f"nobody {action}.",
    }[label]
    return f"{subject.capitalize()} {action} in the park.", hypothesis


def write_nli_csv(path, n, seed=0):
    """An SNLI-style csv whose labels follow a rule a tiny model can pick up."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("pairID,sentence1,sentence2,label\n")
        for i in range(n):
            premise, hypothesis = _pair(rng, LABELS[i % 3])
            f.write(f'{i},"{premise}","{hypothesis}",{LABELS[i % 3]}\n')


def write_vocab(path):
    words = sorted({w for text in SUBJECTS + ACTIONS for w in text.split()})
    words += ["in", "the", "park", "at", "night", "nobody", "."]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    tokens = SPECIAL + sorted(set(words) | set(letters)) + [f"##{c}" for c in letters]
    path.write_text("\n".join(tokens) + "\n")


@functools.cache
def build_tiny_run(root: str) -> dict[str, str]:
    """A tiny Sentence-BERT fine-tuned from scratch for a few steps, with an eval report:
    {"run": run directory, "hf": `hf:` folder of its encoder alone (no classifier), "dev": its
    NLI dev csv}. Built once per process; the browser test reuses it."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_vocab(root / "vocab.txt")
    write_nli_csv(root / "train.csv", 64)
    write_nli_csv(root / "dev.csv", 24, seed=3)
    config = finetune_config()
    config.tokenizer.vocab_file = str(root / "vocab.txt")
    config.model.max_position_embeddings = 64
    config.model.vocab_multiple = 8
    config.data.train = str(root / "train.csv")
    config.data.eval_nli = str(root / "dev.csv")
    config.data.eval_sts = ""
    config.data.max_len = 32
    config.data.buckets = "32"
    config.optim.lr = 1e-3
    config.train.batch_size = 8
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.eval_every = 3
    config.train.eval_at_start = False
    config.train.checkpoint_every = 6
    config.train.primary_metric = "nli_accuracy"
    run_dir = str(root / "sbert_tiny")
    finetune.finetune(config, run_dir)
    model = SentenceModel.from_dir(run_dir)
    report = evaluate.evaluate_dataset(model, nli.read_pairs(nli.resolve(str(root / "dev.csv"))))
    evaluate.save_report(report, os.path.join(run_dir, "eval"), "nli_dev")
    hf_dir = str(root / "hf_encoder")
    hf.export_pretrained(
        hf_dir,
        config=model.model_config,
        params={"bert": model.params["bert"]},
        tokenizer=model.tokenizer,
        max_seq_length=model.max_len,
    )
    return {"run": run_dir, "hf": f"hf:{hf_dir}", "dev": str(root / "dev.csv")}


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return build_tiny_run(str(tmp_path_factory.getbasetemp() / "app_model"))


@pytest.fixture(scope="session")
def tiny_model(tiny):
    return SentenceModel.from_dir(tiny["run"])


@pytest.fixture(autouse=True)
def feedback_db(tmp_path, monkeypatch):
    """Each test's judgements in its own database, never the user's."""
    path = str(tmp_path / "feedback.sqlite3")
    monkeypatch.setenv("JAXBERT_FEEDBACK_DB", path)
    return path


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def start(monkeypatch, model: str | None, examples: str = "") -> AppTest:
    """The app as `JAXBERT_MODEL=model streamlit run app.py` would show it (after one run)."""
    if model is None:
        monkeypatch.delenv("JAXBERT_MODEL", raising=False)
    else:
        monkeypatch.setenv("JAXBERT_MODEL", model)
    if examples:
        monkeypatch.setenv("JAXBERT_EXAMPLES", examples)
    return AppTest.from_file(APP, default_timeout=180).run()  # compiles; CPU shared


@pytest.fixture
def app(tiny, monkeypatch):
    return start(monkeypatch, tiny["run"], examples=tiny["dev"])


SECTIONS = ["Pair query", "Examples", "Batch", "Semantic search", "Model card", "Judgements"]


def section(at, name: str):
    return at.tabs[SECTIONS.index(name)]


def metrics(at, name: str) -> dict[str, str]:
    return {m.label: m.value for m in section(at, name).metric}


def results_table(at, name: str, first_column: str):
    return next(d.value for d in section(at, name).dataframe if d.value.columns[0] == first_column)


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def assert_healthy(at) -> None:
    """No uncaught exception, and the pair query still renders."""
    assert not at.exception, at.exception
    assert at.button(key="FormSubmitter:pair_form-Predict").label == "Predict"


def upload(at, key: str, name: str, data: bytes) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, "text/csv"))
    return at.run()


def pairs_csv(rows, header="sentence1,sentence2,label") -> bytes:
    return ("\n".join([header] + [",".join(row) for row in rows]) + "\n").encode()


# ---------------------------------------------------------------------------- start


def test_no_model_page_says_how_to_get_one(monkeypatch):
    at = start(monkeypatch, None)
    assert not at.exception and not at.tabs
    assert "No model loaded" in at.info[0].value
    commands = at.code[0].value
    for recipe in ("nli", "distill", "scratch"):
        assert f"bash scripts/reproduce.sh {recipe} runs/{recipe}" in commands
    assert "runs/nli/final" in commands


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: tmp, "has no checkpoints"),
    ],
)
def test_a_bad_model_path_is_a_message_not_a_stack_trace(make, message, tmp_path, monkeypatch):
    at = start(monkeypatch, str(make(tmp_path)))
    assert not at.exception and not at.tabs
    assert message in at.error[0].value and "Cannot load a model" in at.error[0].value
    assert "scripts/reproduce.sh nli" in at.code[0].value


def test_model_path_from_the_sidebar(tiny, tiny_model, monkeypatch):
    at = start(monkeypatch, None)
    at.sidebar.text_input(key="model_path").input(tiny["run"]).run()
    assert not at.exception
    assert [t.label for t in at.tabs] == SECTIONS
    assert "entailment, neutral, contradiction" in at.sidebar.markdown[0].value
    # Fine-tuning fitted the classifier's temperature on the dev pairs; the sidebar says so.
    assert tiny_model.temperature != 1.0
    assert f"temperature {tiny_model.temperature:.2f}" in at.sidebar.markdown[0].value


def test_model_path_from_argv_or_environment():
    env = {"JAXBERT_MODEL": "runs/from_env"}
    assert app_support.model_path_from(["--model", "runs/a"], env) == "runs/a"
    assert app_support.model_path_from(["--model=runs/b"], env) == "runs/b"
    assert app_support.model_path_from(["-q", "tests"], env) == "runs/from_env"
    assert app_support.model_path_from([], {}) == ""


def test_the_model_is_loaded_once_per_process(tiny, monkeypatch):
    calls = []
    load = SentenceModel.load.__func__

    def counting_load(cls, path, **options):
        calls.append(path)
        return load(cls, path, **options)

    monkeypatch.setattr(SentenceModel, "load", classmethod(counting_load))
    at = start(monkeypatch, tiny["run"], examples=tiny["dev"])
    at.run()
    start(monkeypatch, tiny["run"], examples=tiny["dev"])  # a second browser session
    assert calls == [tiny["run"]]


# ---------------------------------------------------------------------------- pair query


def test_pair_query_shows_label_probabilities_similarity_and_latency(app, tiny_model):
    premise, hypothesis = "A man plays a guitar in the park.", "nobody plays a guitar."
    app.text_area(key="pair_a").input(premise)
    app.text_area(key="pair_b").input(hypothesis)
    app.button(key="FormSubmitter:pair_form-Predict").click().run()
    assert not app.exception and not app.warning
    expected = tiny_model.classify(premise, hypothesis)
    shown = metrics(app, "Pair query")
    assert shown["Predicted label"] == max(expected, key=expected.get)
    assert shown["Probability"] == f"{max(expected.values()):.1%}"
    assert float(shown["Cosine similarity"]) == pytest.approx(
        tiny_model.similarity(premise, hypothesis), abs=1e-3
    )
    assert shown["Latency"].endswith(" ms") and float(shown["Latency"][:-3]) > 0
    (chart,) = section(app, "Pair query").get("vega_lite_chart")  # the probability bars
    bars = dataframe_util.convert_arrow_bytes_to_pandas_df(chart.proto.data.data)
    assert list(bars["label"]) == list(tiny_model.label_names)  # in the model's order
    assert list(bars["probability"]) == pytest.approx(list(expected.values()), abs=1e-6)


@pytest.mark.parametrize("premise, hypothesis", [("", "A dog."), ("A dog.", "   ")])
def test_pair_query_with_an_empty_input_warns(app, premise, hypothesis):
    app.text_area(key="pair_a").input(premise)
    app.text_area(key="pair_b").input(hypothesis)
    app.button(key="FormSubmitter:pair_form-Predict").click().run()
    assert_healthy(app)
    assert "both boxes" in app.warning[0].value
    assert "Predicted label" not in metrics(app, "Pair query")


def test_pair_query_cuts_long_text_and_truncates_tokens_with_notices(app):
    app.text_area(key="pair_a").input("a " * 1500)  # 3,000 characters, 1,500 tokens
    app.text_area(key="pair_b").input("the chef cooks dinner " * 8)  # 34 tokens
    app.button(key="FormSubmitter:pair_form-Predict").click().run()
    assert_healthy(app)
    notices = texts(app.info)
    assert any("The premise has 2,999 characters; only the first 2,000" in n for n in notices)
    assert any("The premise is longer than the model's 32 tokens" in n for n in notices)
    assert any("The hypothesis is longer than the model's 32 tokens" in n for n in notices)
    assert "Predicted label" in metrics(app, "Pair query")


# ---------------------------------------------------------------------------- examples


def test_examples_show_the_gold_label_and_mark_the_prediction(app, tiny, tiny_model):
    dataset = nli.read_pairs(nli.resolve(tiny["dev"]))
    app.selectbox(key="example_label").select("contradiction").run()
    app.number_input(key="example_number").set_value(2).run()
    assert not app.exception
    i = int(np.flatnonzero(dataset.labels == 2)[1])
    premise, hypothesis = dataset.sentence1[i], dataset.sentence2[i]
    assert f"**Premise** · {premise}" in texts(app.markdown)
    probabilities = tiny_model.classify(premise, hypothesis)
    predicted = max(probabilities, key=probabilities.get)
    shown = metrics(app, "Examples")
    assert shown["Gold label"] == "contradiction" and shown["Predicted label"] == predicted
    badge = (
        ":green-badge[:material/check: Correct]"
        if predicted == "contradiction"
        else (":red-badge[:material/close: Wrong: gold is contradiction]")
    )
    assert badge in texts(app.markdown)
    app.button[1].click().run()  # random pair
    assert not app.exception and 1 <= app.number_input(key="example_number").value <= 8


def test_examples_from_a_missing_file_are_an_error_and_the_app_keeps_working(app, tmp_path):
    app.text_input(key="examples_source").input(str(tmp_path / "nope.csv")).run()
    assert_healthy(app)
    assert "Cannot read NLI pairs" in app.error[0].value and "nope.csv" in app.error[0].value
    app.text_input(key="examples_source").input("stanfordnlp/snli").run()  # a hub name
    assert_healthy(app)
    assert "the app reads local files only" in app.error[0].value


# ---------------------------------------------------------------------------- batch


def test_batch_upload_with_gold_labels(app, tiny, tiny_model):
    dataset = nli.read_pairs(nli.resolve(tiny["dev"]))
    rows = [
        (f'"{a}"', f'"{b}"', dataset.label_names[y])
        for a, b, y in zip(dataset.sentence1, dataset.sentence2, dataset.labels)
    ]
    upload(app, "batch_file", "dev.csv", pairs_csv(rows))
    assert not app.exception and not app.error
    app.button(key="batch_run").click().run()
    assert not app.exception
    expected = evaluate.evaluate_nli(tiny_model, dataset)
    shown = metrics(app, "Batch")
    assert shown["Pairs"] == str(len(dataset))
    assert shown["Accuracy"] == f"{expected['accuracy']:.1%}"
    results = results_table(app, "Batch", "sentence1")
    assert list(results.columns) == [
        "sentence1",
        "sentence2",
        "gold",
        "predicted",
        "correct",
        *[f"p_{n}" for n in tiny_model.label_names],
        "similarity",
    ]
    np.testing.assert_allclose(
        results[[f"p_{n}" for n in tiny_model.label_names]].sum(axis=1), 1.0, atol=1e-5
    )
    confusion = section(app, "Batch").dataframe[0].value  # rows gold, columns predicted
    assert list(confusion.columns) == list(tiny_model.label_names)
    assert confusion.to_numpy().tolist() == expected["confusion"]
    assert app.download_button[-1].label == "Download results (CSV)"


def test_batch_paste_tsv_without_gold_labels(app):
    app.text_area(key="batch_paste").input(
        "premise\thypothesis\nA dog runs.\tAn animal moves.\nA chef cooks.\tNobody cooks.\n"
    ).run()
    app.button(key="batch_run").click().run()
    assert not app.exception
    assert metrics(app, "Batch")["Pairs"] == "2" and "Accuracy" not in metrics(app, "Batch")
    results = results_table(app, "Batch", "sentence1")
    assert "gold" not in results.columns and len(results) == 2


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("pairs.csv", b"text,other\nA dog.,A cat.\n", "needs a header with columns sentence1"),
        ("pairs.csv", "sentence1,sentence2\nCafé.,Thé.\n".encode("latin-1"), "not UTF-8 text"),
        ("pairs.csv", "sentence1,sentence2\nA.,B.\n".encode("utf-16"), "not a text file"),
        ("pairs.csv", pairs_csv([("A dog.", "A cat.", "-")] * 5001), "the limit is 5,000"),
        ("pairs.csv", pairs_csv([("A dog.", "A cat.", "maybe")]), "unknown label 'maybe'"),
        ("pairs.csv", b"", "is empty"),
    ],
    ids=["columns", "encoding", "binary", "rows", "label", "empty"],
)
def test_batch_malformed_upload_is_a_clear_message(app, name, data, message):
    upload(app, "batch_file", name, data)
    assert_healthy(app)
    assert message in app.error[0].value
    assert not [b for b in app.button if b.key == "batch_run"]
    app.file_uploader(key="batch_file").set_value(None)
    app.text_area(key="batch_paste").input("sentence1,sentence2\nA dog.,A cat.\n").run()
    app.button(key="batch_run").click().run()  # and the app keeps working
    assert not app.exception and metrics(app, "Batch")["Pairs"] == "1"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"sentence1\nA dog.\n", "needs a header with columns sentence1"),
        (b"\xff\xfe\x00\x00", "not a text file"),
        ("sentence1,sentence2\nCaf\xe9.,x\n".encode("latin-1"), "not UTF-8 text"),
        (pairs_csv([("a", "b", "-")] * 11), "has 11 rows; the limit is 10"),
        (pairs_csv([("a", "b", "wrong")]), r"line 2: unknown label 'wrong'"),
        (b"sentence1,sentence2\n,\n", "has no usable sentence pair"),
        (b"  \n", "is empty"),
        (b"x" * 2000, "the limit is 0 MB"),
    ],
)
def test_parse_pairs_errors(data, message):
    with pytest.raises(InputError, match=message):
        app_support.parse_pairs(
            data,
            name="f.csv",
            label_names=LABELS,
            max_rows=10,
            max_chars=50,
            max_bytes=1000 if data == b"x" * 2000 else 0,
        )


def test_parse_pairs_reads_csv_and_tsv_maps_labels_and_reports_what_it_skipped():
    csv_text = (
        "id,premise,hypothesis,gold_label\n"
        '1,"A man, smiling.",A man.,Entailment\n'
        "2,A dog.,A cat.,-\n"
        "3,A dog.,,neutral\n"
        "4,too,many,columns,here\n"
        f"5,{'x' * 60},A cat.,CONTRADICTION\n"
    )
    table = app_support.parse_pairs(csv_text, label_names=LABELS, max_rows=10, max_chars=50)
    assert table.sentence1 == ["A man, smiling.", "A dog.", "x" * 50]
    assert table.gold == ["entailment", None, "contradiction"]
    assert table.notices == [
        "Skipped 1 row(s) whose number of columns differs from the header's 4 (first at line 5;"
        " quote fields that contain the separator).",
        "Skipped 1 row(s) with an empty sentence.",
        "Cut 1 sentence(s) longer than 50 characters.",
    ]
    tsv = "\ufeffsentence1\tsentence2\nA, b.\tC.\n".encode()  # BOM, comma inside a TSV field
    table = app_support.parse_pairs(tsv, label_names=LABELS, max_rows=10, max_chars=50)
    assert (table.sentence1, table.sentence2, table.gold) == (["A, b."], ["C."], None)
    kept = app_support.parse_pairs(b"sentence1,sentence2,label\na,b,0.7\n", max_rows=5, max_chars=9)
    assert kept.gold == ["0.7"]  # a model without labels keeps gold as written


# ---------------------------------------------------------------------------- search


def test_search_finds_the_nearest_sentences_and_keeps_the_embeddings(app, tiny_model):
    query = "Two dogs run through a snowy field."
    app.text_input(key="search_query").input(query).run()
    assert not app.exception
    index = app.session_state["search_index"]
    results = results_table(app, "Semantic search", "similarity")
    assert len(results) == 5 and results["sentence"].iloc[0] == query
    assert results["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert list(results["similarity"]) == sorted(results["similarity"], reverse=True)

    app.text_input(key="search_query").input("A chef cooks.").run()
    app.slider(key="search_k").set_value(3).run()
    assert app.session_state["search_index"] is index  # not recomputed on a rerun
    results = results_table(app, "Semantic search", "similarity")
    assert len(results) == 3

    app.text_area(key="search_text").input("A chef cooks.\nA dog barks.\nA chef cooks.\n").run()
    assert app.session_state["search_index"] is not index  # a new list is encoded again
    assert "Dropped 1 repeated sentence(s)." in texts(app.info)
    results = results_table(app, "Semantic search", "similarity")
    assert list(results["sentence"]) == ["A chef cooks.", "A dog barks."]


def test_search_over_an_uploaded_list(app):
    upload(app, "search_file", "list.txt", b"A dog barks.\nA cat sleeps.\n\nA man sings.\n")
    app.text_input(key="search_query").input("A cat sleeps.").run()
    assert not app.exception
    assert any(c.value.startswith("3 sentences indexed") for c in app.caption)
    results = results_table(app, "Semantic search", "similarity")
    assert results["sentence"].iloc[0] == "A cat sleeps."


def test_search_bad_inputs(app):
    app.text_area(key="search_text").input("  \n").run()
    assert_healthy(app)
    assert "Add at least one sentence" in app.warning[0].value
    upload(app, "search_file", "big.txt", "\n".join(f"s{i}" for i in range(10_001)).encode())
    assert_healthy(app)
    assert "has 10,001 sentences; the limit is 10,000" in app.error[0].value
    app.file_uploader(key="search_file").set_value(None)
    app.text_area(key="search_text").input("A dog barks.\n").run()
    app.text_input(key="search_query").input("b" * 2500).run()
    assert_healthy(app)
    assert any("The query has 2,500 characters" in n for n in texts(app.info))


def test_probability_chart_keeps_the_models_label_order():
    spec = app_support.probability_chart({"b": 0.2, "c": 0.5, "a": 0.3})
    assert [(v["label"], v["top"]) for v in spec["data"]["values"]] == [
        ("b", False),
        ("c", True),
        ("a", False),
    ]
    assert spec["encoding"]["y"]["sort"] is None  # Vega-Lite keeps the data order


def test_parse_sentences_and_top_k():
    sentences, notices = app_support.parse_sentences(
        "id,text\n1,A dog.\n2,A cat.\n3,A dog.\n", name="l.csv", max_sentences=5, max_chars=9
    )
    assert sentences == ["A dog.", "A cat."] and notices == ["Dropped 1 repeated sentence(s)."]
    with pytest.raises(InputError, match="has 3 sentences; the limit is 2"):
        app_support.parse_sentences("a\nb\nc", max_sentences=2, max_chars=9)
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    hits = app_support.top_k(np.array([1.0, 0.1]), embeddings, 2)
    assert [i for i, _ in hits] == [0, 2] and hits[0][1] == pytest.approx(0.995, abs=1e-3)
    assert len(app_support.top_k(np.array([1.0, 0.0]), embeddings, 10)) == 3


# ---------------------------------------------------------------------------- model card


def test_model_card_shows_config_metrics_and_plots(app):
    assert not app.exception
    shown = metrics(app, "Model card")
    assert shown["Steps"] == "6" and shown["Stopped"] == "finished" and "nli accuracy" in shown
    config = results_table(app, "Model card", "setting")
    settings = dict(zip(config["setting"], config["value"]))
    assert settings["run"] == "Sentence-BERT fine-tuning" and settings["objective"] == "softmax"
    reports = results_table(app, "Model card", "report")
    assert reports["report"].tolist() == ["nli_dev"]
    assert reports["temperature"].tolist() != [1.0] and 0 <= reports["ece"].iloc[0] <= 100
    card = section(app, "Model card")
    assert len(card.get("vega_lite_chart")) == 1  # the chosen training metric over steps
    assert len(card.image) == 3  # curves.png, the confusion matrix and the reliability diagram


def test_read_model_card_tolerates_a_run_in_progress(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"size": "small"}}))
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 10, "split": "train", "loss": 7.5}\n{"step": 20, "split": "tr'
    )
    card = run_card.read_model_card(str(tmp_path))
    assert card.summary is None and card.plots == [] and card.problems == []
    assert card.metrics == {"train": {"loss": [(10, 7.5)]}}
    assert run_card.config_summary(card.config) == {
        "run": "MLM + NSP pretraining",
        "model size": "small",
    }
    (tmp_path / "summary.json").write_text("{")
    assert "summary.json is unreadable" in run_card.read_model_card(str(tmp_path)).problems[0]
    assert run_card.read_model_card(str(tmp_path / "nothing")) is None


# ---------------------------------------------------------------------------- no classifier


def test_a_model_without_classifier_offers_similarity_and_search(tiny, monkeypatch):
    at = start(monkeypatch, tiny["hf"], examples=tiny["dev"])
    assert not at.exception
    assert "no NLI classifier" in at.info[0].value
    at.button(key="FormSubmitter:pair_form-Predict").click().run()
    shown = metrics(at, "Pair query")
    assert "Predicted label" not in shown and "Cosine similarity" in shown
    # The examples still show their gold label and similarity.
    assert {"Gold label", "Cosine similarity"} <= set(metrics(at, "Examples"))
    at.text_area(key="batch_paste").input("sentence1,sentence2,label\na,b,entailment\n").run()
    at.button(key="batch_run").click().run()
    assert not at.exception and "Accuracy" not in metrics(at, "Batch")
    at.text_input(key="search_query").input("a").run()
    assert not at.exception
    assert any("imported model folder" in i.value for i in at.info)


def test_switching_models_drops_the_previous_models_results(tiny, monkeypatch):
    at = start(monkeypatch, tiny["run"], examples=tiny["dev"])
    at.button(key="FormSubmitter:pair_form-Predict").click().run()
    at.text_area(key="batch_paste").input("sentence1,sentence2,label\na,b,entailment\n").run()
    at.button(key="batch_run").click().run()
    assert "Predicted label" in metrics(at, "Pair query") and "Accuracy" in metrics(at, "Batch")
    at.sidebar.text_input(key="model_path").input(tiny["hf"]).run()  # a model without classifier
    assert not at.exception
    assert "Predicted label" not in metrics(at, "Pair query")
    assert "Accuracy" not in metrics(at, "Batch")
    assert not section(at, "Batch").dataframe
