"""Property-based fuzzing (hypothesis) of everything that takes outside input: pair files, text
corpora, vocab files, --config overrides, the tokenizer trainer and SentenceModel. Outcomes
allowed: a result of the right shape, or a clean one-line error of the documented type; never
another exception, a hang or a wrong shape. FUZZ_EXAMPLES=500 runs more examples."""

import os
import threading
import time

import numpy as np
import pytest
from conftest import tiny_sentence_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxbert import cli
from jaxbert.data import nli, sources
from jaxbert.data.tokenizer import BertTokenizer, continuation_pieces

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
READ_ERRORS = (ValueError, FileNotFoundError, sources.SourceUnavailableError)

# Text that looks like the formats (delimiters, quotes, braces, newlines) more often than
# uniform Unicode would, plus arbitrary Unicode.
format_chars = st.sampled_from(list(",\t\"'{}[]:\n\r\\ -") + ["label", "sentence1", "text"])
file_text = st.lists(st.one_of(format_chars, st.text(max_size=8)), max_size=40).map("".join)


def assert_clean(error: BaseException):
    message = str(error)
    assert message.strip(), f"{type(error).__name__} without a message"
    assert "\n" not in message.strip(), f"multi-line message: {message!r}"


def _write(tmp_path, suffix: str, content: str | bytes):
    path = tmp_path / f"fuzz{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


pair_header = st.sampled_from(
    ["sentence1,sentence2,label\n", "sentence1\tsentence2\tlabel\n", "premise,hypothesis,label\n"]
)


@FUZZ
@given(
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]),
    header=st.one_of(st.just(""), pair_header),
    body=st.one_of(file_text, st.binary(max_size=200)),
)
def test_pair_file_readers(tmp_path_factory, suffix, header, body):
    content = body if isinstance(body, bytes) else header + body
    path = _write(tmp_path_factory.mktemp("pairs"), suffix, content)
    try:
        dataset = nli.read_pairs(path)
    except READ_ERRORS as error:
        assert_clean(error)
        return
    assert len(dataset.sentence1) == len(dataset.sentence2) == len(dataset)
    assert all(isinstance(s, str) for s in dataset.sentence1 + dataset.sentence2)


@FUZZ
@given(
    suffix=st.sampled_from([".txt", ".jsonl", ".json", ".csv", ".tsv", ".txt.gz", ".jsonl.gz"]),
    body=st.one_of(file_text, st.binary(max_size=200)),
)
def test_text_corpus_readers(tmp_path_factory, suffix, body):
    path = _write(tmp_path_factory.mktemp("corpus"), suffix, body)
    try:
        documents = list(sources.iter_documents(files=path))
    except READ_ERRORS as error:
        assert_clean(error)
        return
    assert all(isinstance(d, str) and d.strip() for d in documents)


@FUZZ
@given(body=st.one_of(file_text, st.binary(max_size=200)), specials=st.booleans())
def test_vocab_reader(tmp_path_factory, body, specials):
    if specials and isinstance(body, str):
        body = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n" + body
    path = _write(tmp_path_factory.mktemp("vocab"), ".txt", body)
    try:
        tokenizer = BertTokenizer.from_vocab(path)
    except (ValueError, UnicodeDecodeError) as error:
        assert_clean(error)
        return
    (ids,) = tokenizer.encode_batch(["hello world"])
    assert ids.dtype == np.int32 and ids[0] == tokenizer.cls_id


@FUZZ
@given(
    overrides=st.lists(
        st.one_of(
            st.text(max_size=30).map(lambda s: "--config." + s),
            st.sampled_from(["--config.train.lr", "--config.optim.lr=1e-3", "--config.", "-"]),
        ),
        max_size=5,
    )
)
def test_config_overrides_never_crash(overrides):
    argv = ["pretrain.py", "--config=configs/pretrain_tiny.py", *overrides]
    messages = cli.unknown_overrides(argv)
    assert all(isinstance(m, str) and "\n" not in m for m in messages)


@FUZZ
@given(texts=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6))
def test_continuation_pieces_match_the_pre_tokenizer(texts):
    tokenizer = BertTokenizer.train(["seed text"], vocab_size=40, min_frequency=1).backend
    expected = set()
    for text in texts:
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(
            tokenizer.normalizer.normalize_str(text)
        ):
            expected.update(word[1:])
    assert continuation_pieces(tokenizer, texts) == ["##" + c for c in sorted(expected)]


# ----------------------------------------------------------------------------- SentenceModel

SENTENCES = ["A man plays a guitar.", "Music!", "The chef cooks dinner.", "a woman reads"]


@pytest.fixture(scope="module")
def model():
    return tiny_sentence_model(SENTENCES, tokenizer_vocab=120, model_vocab=128, max_len=32)


anything = st.one_of(
    st.text(max_size=60), st.integers(), st.none(), st.binary(max_size=8), st.floats()
)
texts_or_junk = st.one_of(st.text(max_size=60), st.lists(anything, max_size=8), anything)
SERVE_ERRORS = (ValueError, TypeError)


@FUZZ
@given(texts=texts_or_junk)
def test_encode(model, texts):
    try:
        out = model.encode(texts)
    except SERVE_ERRORS as error:
        assert_clean(error)
        return
    n = None if isinstance(texts, str) else len(texts)
    assert out.shape == ((model.hidden_size,) if n is None else (n, model.hidden_size))
    assert out.dtype == np.float32 and np.isfinite(out).all()


@FUZZ
@given(a=texts_or_junk, b=texts_or_junk)
def test_similarity_and_classify(model, a, b):
    try:
        score = model.similarity(a, b)
    except SERVE_ERRORS as error:
        assert_clean(error)
    else:
        scores = np.atleast_1d(score)
        assert np.isfinite(scores).all() and (np.abs(scores) <= 1 + 1e-5).all()
        assert isinstance(score, float) or scores.shape == (len(a),)
    try:
        result = model.classify(a, b)
    except SERVE_ERRORS as error:
        assert_clean(error)
    else:
        rows = [result] if isinstance(result, dict) else result
        assert len(rows) == (1 if isinstance(a, str) else len(a))
        for row in rows:
            assert set(row) == set(model.label_names)
            assert abs(sum(row.values()) - 1) < 1e-5


def test_a_one_megabyte_string_and_an_empty_list(model):
    big = "word " * 200_000
    assert model.encode(big).shape == (model.hidden_size,)
    assert isinstance(model.similarity(big, "word"), float)
    assert model.encode([]).shape == (0, model.hidden_size)
    with pytest.raises(ValueError, match="text 0 is empty"):
        model.encode("   ")


@pytest.mark.slow
def test_ten_thousand_texts(model):
    texts = [f"{SENTENCES[i % 4]} number {i}" for i in range(10_000)]
    out = model.encode(texts)
    assert out.shape == (10_000, model.hidden_size) and np.isfinite(out).all()
    # Each row as the text alone gives it. Not bit for bit: another batch shape rounds
    # differently (here up to 2.4e-7, one float32 ulp of the largest values, ~1.9); 1e-5 as in
    # tests/test_serve_evaluate.py, far below what a batch-neighbour leak would move.
    rows = [0, 1234, 9_999, *np.random.default_rng(0).choice(10_000, 20, replace=False)]
    alone = np.stack([model.encode(texts[i]) for i in rows])
    np.testing.assert_allclose(out[rows], alone, atol=1e-5)


def mixed_calls(n: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(n):
        a = SENTENCES[rng.integers(4)] + f" {i}"
        b = SENTENCES[rng.integers(4)] + f" {i % 7}"
        kind = ("encode", "encode_list", "similarity", "classify")[i % 4]
        calls.append((kind, a, b))
    return calls


def call(model, kind, a, b):
    if kind == "encode":
        return model.encode(a).tobytes()
    if kind == "encode_list":
        return model.encode([a, b, a + b]).tobytes()
    if kind == "similarity":
        return model.similarity(a, b)
    return tuple(sorted(model.classify(a, b).items()))


@pytest.mark.slow
def test_eight_threads_give_the_serial_results(model, record_property):
    # As the app uses it: Streamlit runs each session's script on its own thread.
    threads, per_thread = 8, int(os.environ.get("FUZZ_THREAD_CALLS", "500"))
    work = [mixed_calls(per_thread, seed) for seed in range(threads)]
    started = time.perf_counter()
    serial = [[call(model, *c) for c in calls] for calls in work]
    serial_seconds = time.perf_counter() - started
    results = [None] * threads
    errors = []

    def worker(t):
        try:
            results[t] = [call(model, *c) for c in work[t]]
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=600)
    threaded_seconds = time.perf_counter() - started
    assert not errors and not any(t.is_alive() for t in pool)
    assert results == serial
    total = threads * per_thread
    record_property("serial_calls_per_s", total / serial_seconds)
    record_property("threaded_calls_per_s", total / threaded_seconds)
    print(
        f"{total} mixed calls: serial {total / serial_seconds:.0f}/s, "
        f"{threads} threads {total / threaded_seconds:.0f}/s"
    )
