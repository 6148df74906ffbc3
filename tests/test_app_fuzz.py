"""Every text input and upload of the app (app.py) fuzzed through AppTest with hypothesis:
arbitrary Unicode, control characters, markup, text past the caps, raw bytes. Outcomes allowed:
an answer within the caps, or a message on the page (an error, a warning, a notice); never an
uncaught exception or a traceback on the page. The caps hold: a sentence is cut to MAX_CHARS,
an upload over MAX_UPLOAD_MB or MAX_UPLOAD_ROWS and a list over MAX_SEARCH_SENTENCES are refused,
a judgement stores the text as shown, capped. FUZZ_APP_EXAMPLES (default 25) sets the examples
per input; each takes one to three app runs (1-2 s each on a 2-core CPU)."""

# ruff: noqa: F811 (the fixtures come from test_app, and tests take them as arguments)

import ast
import collections
import os
import pathlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_app import (  # noqa: F401 (fixtures)
    APP,
    app,
    feedback_db,
    fresh_cache,
    metrics,
    results_table,
    section,
    start,
    tiny,
)

from jaxbert import feedback
from jaxbert.feedback import FeedbackStore

pytestmark = pytest.mark.slow


def _app_constants() -> dict[str, int]:
    """The app's caps, read from app.py (importing it would run the app)."""
    tree = ast.parse(pathlib.Path(APP).read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.startswith("MAX_")
    }


CAPS = _app_constants()
MAX_CHARS, MAX_ROWS = CAPS["MAX_CHARS"], CAPS["MAX_UPLOAD_ROWS"]
MAX_BYTES, MAX_SENTENCES = CAPS["MAX_UPLOAD_MB"] << 20, CAPS["MAX_SEARCH_SENTENCES"]
EXAMPLES = int(os.environ.get("FUZZ_APP_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
TRIED = collections.Counter()

tricky = st.sampled_from(
    [
        "",
        "   ",
        "\x00",
        "\x00\x00 \x00",
        "\u200b\u200b",
        "\u202eevil",
        "<script>alert(1)</script>",
        "<b>bold</b> **md** :red[x] $x^2$ [link](javascript:alert(1))",
        "a\r\nb\n\nc",
        "😀" * 30,
        "e\u0301" * 20,
        "\ud7ff\ue000\uffff",
    ]
)
long_text = st.builds(
    lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(400, 3000)
)
any_text = st.one_of(st.text(max_size=80), tricky, long_text)
# Text shaped like CSV / TSV (separators, quotes, headers, newlines) more often than uniform.
table_parts = st.sampled_from(
    list(',\t"\n\r ')
    + ["sentence1,sentence2,label\n", "premise\thypothesis\n", "label", "-", "neutral"]
)
table_text = st.lists(st.one_of(table_parts, any_text), max_size=30).map("".join)
upload_bytes = st.one_of(
    st.binary(max_size=300),
    table_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    table_text.map(lambda s: ("sentence1,sentence2\n" + s).encode("utf-8", "surrogatepass")),
)


@pytest.fixture(scope="module", autouse=True)
def report_examples():
    yield
    print(
        "\napp fuzzing, examples tried per input: "
        + ", ".join(f"{k} {v}" for k, v in TRIED.items())
    )


def assert_page_ok(at) -> None:
    assert not at.exception, at.exception
    for element in [*at.error, *at.warning]:
        assert "Traceback" not in element.value, element.value


def messages(at, name: str) -> list[str]:
    tab = section(at, name)
    return [e.value for e in [*tab.error, *tab.warning, *tab.info]]


# ----------------------------------------------------------------------------- pair query


@FUZZ
@given(premise=any_text, hypothesis=any_text)
@example(premise="x" * (MAX_CHARS + 1), hypothesis="\x00")
@example(premise="<b>hi</b>", hypothesis="a" * 100_000)
def test_pair_query_and_its_judgement(app, feedback_db, premise, hypothesis):
    TRIED["pair query + judgement"] += 1
    app.text_area(key="pair_a").input(premise)
    app.text_area(key="pair_b").input(hypothesis)
    app.button(key="FormSubmitter:pair_form-Predict").click().run()
    assert_page_ok(app)
    shown = metrics(app, "Pair query")
    if not premise.strip() or not hypothesis.strip():
        assert "both boxes" in app.warning[0].value and "Cosine similarity" not in shown
        return
    if "Cosine similarity" not in shown:  # refused with a message instead of an answer
        assert messages(app, "Pair query")
        return
    assert -1.0001 <= float(shown["Cosine similarity"]) <= 1.0001
    for name, text in (("premise", premise), ("hypothesis", hypothesis)):
        cut = len(text.strip()) > MAX_CHARS
        notice = f"The {name} has {len(text.strip()):,} characters; only the first {MAX_CHARS:,}"
        assert cut == any(notice in m for m in messages(app, "Pair query"))
    if not [b for b in app.button if b.key == "pair_judge_right"]:  # this answer was judged
        assert section(app, "Pair query").success
        return
    before = FeedbackStore(feedback_db).count()
    app.text_input(key="pair_judge_comment").input(premise[: feedback.MAX_COMMENT])
    app.button(key="pair_judge_right").click().run()
    assert_page_ok(app)
    store = FeedbackStore(feedback_db)
    if store.count() == before:  # not saved: the page says why
        assert any(e.value.startswith("Not saved: ") for e in section(app, "Pair query").error)
        return
    row = store.rows(limit=1)[0]
    for stored, typed in ((row["sentence1"], premise), (row["sentence2"], hypothesis)):
        assert stored == typed.strip()[:MAX_CHARS].replace("\x00", "").strip()
        assert len(stored) <= feedback.MAX_TEXT
    assert len(row["comment"]) <= feedback.MAX_COMMENT


@FUZZ
@given(comment=st.one_of(any_text, st.just("c" * (feedback.MAX_COMMENT + 500))))
def test_judgement_comment(app, feedback_db, comment):
    TRIED["judgement comment"] += 1
    app.text_area(key="pair_a").input(f"A man plays a guitar {TRIED['judgement comment']}.")
    app.button(key="FormSubmitter:pair_form-Predict").click().run()
    app.text_input(key="pair_judge_comment").input(comment)
    app.button(key="pair_judge_right").click().run()
    assert_page_ok(app)
    (row,) = FeedbackStore(feedback_db).rows(limit=1)
    assert row["sentence1"] == f"A man plays a guitar {TRIED['judgement comment']}."
    assert len(row["comment"]) <= feedback.MAX_COMMENT
    if len(comment) <= feedback.MAX_COMMENT:  # longer: the box takes no more (max_chars)
        assert row["comment"] == comment.replace("\x00", "").strip()


# ----------------------------------------------------------------------------- batch


def check_batch(at, blank: bool = False) -> None:
    assert_page_ok(at)
    if not [b for b in at.button if b.key == "batch_run"]:  # refused: the page says why
        assert blank or section(at, "Batch").error
        return
    at.button(key="batch_run").click().run()
    assert_page_ok(at)
    count = int(metrics(at, "Batch")["Pairs"].replace(",", ""))
    assert 1 <= count <= MAX_ROWS
    table = results_table(at, "Batch", "sentence1")
    assert len(table) == count
    lengths = table["sentence1"].str.len().tolist() + table["sentence2"].str.len().tolist()
    assert 1 <= min(lengths) and max(lengths) <= MAX_CHARS


@FUZZ
@given(text=table_text)
@example(text="sentence1,sentence2\n" + "a,b\n" * (MAX_ROWS + 1))
@example(text="sentence1\tsentence2\n" + "y" * (MAX_CHARS + 5) + "\tz\n")
def test_batch_paste(app, text):
    TRIED["batch paste"] += 1
    app.text_area(key="batch_paste").input(text).run()
    check_batch(app, blank=not text.strip())
    if text.count("\n") > MAX_ROWS:
        assert f"the limit is {MAX_ROWS:,}" in section(app, "Batch").error[0].value


@FUZZ
@given(name=st.sampled_from(["p.csv", "p.tsv", "p.txt"]), data=upload_bytes)
@example(name="big.csv", data=b"sentence1,sentence2\n" + b"a,b\n" * (MAX_BYTES // 4))
@example(name="empty.csv", data=b"")
def test_batch_upload(app, name, data):
    TRIED["batch upload"] += 1
    app.file_uploader(key="batch_file").set_value((name, data, "text/csv"))
    app.run()
    check_batch(app)
    if len(data) > MAX_BYTES:
        assert f"the limit is {CAPS['MAX_UPLOAD_MB']} MB" in section(app, "Batch").error[0].value


# ----------------------------------------------------------------------------- search


def check_search(at) -> None:
    assert_page_ok(at)
    for caption in section(at, "Semantic search").caption:
        if "sentences indexed" in caption.value:
            assert 1 <= int(caption.value.split()[0].replace(",", "")) <= MAX_SENTENCES


@FUZZ
@given(text=st.one_of(table_text, st.lists(any_text, max_size=20).map("\n".join)))
@example(text="\n".join(f"s{i}" for i in range(MAX_SENTENCES + 1)))
def test_search_list_pasted(app, text):
    TRIED["search list"] += 1
    app.text_area(key="search_text").input(text).run()
    check_search(app)
    if len({line.strip() for line in text.splitlines() if line.strip()}) > MAX_SENTENCES:
        assert f"the limit is {MAX_SENTENCES:,}" in section(app, "Semantic search").error[0].value


@FUZZ
@given(name=st.sampled_from(["s.txt", "s.csv", "s.tsv"]), data=upload_bytes)
@example(name="big.txt", data=b"x\n" * (MAX_BYTES // 2 + 1))
def test_search_upload(app, name, data):
    TRIED["search upload"] += 1
    app.file_uploader(key="search_file").set_value((name, data, "text/plain"))
    app.run()
    check_search(app)
    if len(data) > MAX_BYTES:
        error = section(app, "Semantic search").error[0].value
        assert f"the limit is {CAPS['MAX_UPLOAD_MB']} MB" in error


@FUZZ
@given(query=any_text, k=st.integers(1, CAPS["MAX_TOP_K"]))
def test_search_query(app, query, k):
    TRIED["search query"] += 1
    app.slider(key="search_k").set_value(k)
    app.text_input(key="search_query").input(query).run()
    assert_page_ok(app)
    tables = [d.value for d in section(app, "Semantic search").dataframe]
    if query.strip():
        (hits,) = tables
        assert 1 <= len(hits) <= k and hits["sentence"].str.len().max() <= MAX_CHARS
    else:
        assert not tables


# ----------------------------------------------------------------------------- paths


ODD_PATHS = ["/", ".", "..", "~", "/dev/zero", "/dev/null", "/proc/self/mem", "hf:", "hf:/"]


@FUZZ
@given(source=st.one_of(any_text, st.sampled_from(ODD_PATHS)))
@example(source="/dev/zero")
@example(source="/proc/self/mem")
@example(source="/")
def test_examples_source(app, source):
    TRIED["examples source"] += 1
    app.text_input(key="examples_source").input(source).run()
    assert_page_ok(app)


@FUZZ
@given(path=st.one_of(any_text, st.sampled_from(ODD_PATHS)))
@example(path="/dev/zero")
@example(path="hf:/dev/zero")
@example(path="/")
def test_model_directory(tiny, monkeypatch, path):
    TRIED["model directory"] += 1
    at = start(monkeypatch, tiny["run"])
    at.sidebar.text_input(key="model_path").input(path).run()
    assert_page_ok(at)
    if path.strip() and not at.tabs:  # no model: the page says why and what to do
        assert at.error or at.markdown


@FUZZ
@given(paths=st.lists(st.one_of(any_text, st.just("runs")), max_size=4).map("\n".join))
def test_models_to_compare(app, feedback_db, paths):
    TRIED["models to compare"] += 1
    if not FeedbackStore(feedback_db).count():
        app.button(key="FormSubmitter:pair_form-Predict").click().run()
        app.button(key="pair_judge_right").click().run()
    app.text_area(key="compare_models").input(paths)
    app.button(key="FormSubmitter:compare_form-Compare").click().run()
    assert_page_ok(app)
