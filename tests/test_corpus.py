import numpy as np
import pytest

from jaxbert.data.corpus import TokenizedCorpus, build_corpus, prepare_corpus, token_dtype
from jaxbert.data.sentences import split_sentences
from jaxbert.data.sources import iter_documents
from jaxbert.data.tokenizer import BertTokenizer


@pytest.fixture
def documents(tiny_corpus_dir):
    return list(iter_documents(files=str(tiny_corpus_dir / "corpus.jsonl")))


@pytest.fixture
def out_dir(tmp_path):
    """An empty directory for builds (tmp_path itself holds the fixture corpus)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def tokenizer(documents):
    return BertTokenizer.train(documents, vocab_size=200, min_frequency=1)


def _expected(tokenizer, text):
    return tokenizer.encode_batch(split_sentences(text), add_special_tokens=False)


def _assert_same_documents(corpus, tokenizer, texts):
    assert corpus.num_documents == len(texts)
    for i, text in enumerate(texts):
        got = corpus.document(i)
        want = _expected(tokenizer, text)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == np.int32
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Line one\nLine two.\n\n  Line three  ", ["Line one", "Line two.", "Line three"]),
        (
            "Dr. Smith met Mr. J. R. R. Tolkien in the U.S. army. He left at 5 p.m. today.",
            ["Dr. Smith met Mr. J. R. R. Tolkien in the U.S. army.", "He left at 5 p.m. today."],
        ),
        ('He said "Stop." Then he left. (It was 1539.) 42 came.', None),
        (
            "e.g. this, i.e. that, etc. stay together.",
            ["e.g. this, i.e. that, etc. stay together."],
        ),
        ("Version 2.0 is out. it continues lower-case.", None),
        ("", []),
    ],
)
def test_split_sentences(text, sentences):
    if sentences is None:
        sentences = {
            'He said "Stop." Then he left. (It was 1539.) 42 came.': [
                'He said "Stop."',
                "Then he left.",
                "(It was 1539.)",
                "42 came.",
            ],
            "Version 2.0 is out. it continues lower-case.": [
                "Version 2.0 is out. it continues lower-case."
            ],
        }[text]
    assert split_sentences(text) == sentences


def test_build_and_reopen_roundtrip(documents, tokenizer, out_dir):
    corpus = build_corpus(iter(documents), tokenizer, out_dir / "c", batch_docs=7)
    reopened = TokenizedCorpus.open(out_dir / "c")
    for c in (corpus, reopened):
        _assert_same_documents(c, tokenizer, documents)
        assert c.tokens.dtype == np.uint16
        assert c.num_sentences == sum(len(split_sentences(d)) for d in documents)
        assert c.num_tokens == int(c.sentence_offsets[-1]) == len(c.tokens)
        assert c.doc_offsets[0] == 0 and c.doc_offsets[-1] == c.num_sentences
        assert np.all(np.diff(c.sentence_offsets) > 0)  # no empty sentences stored
        assert c.tokenizer_fingerprint == tokenizer.fingerprint()
    assert not [p for p in out_dir.iterdir() if p.name != "c"]  # no temporary leftovers


def test_empty_documents_and_sentences_skipped(tokenizer, out_dir):
    corpus = build_corpus(
        ["A cat.", "", "   ", "\x00\x01", "Two dogs. A bird."], tokenizer, out_dir
    )
    assert corpus.num_documents == 2
    assert [len(corpus.document(i)) for i in range(2)] == [1, 2]


def test_token_dtype():
    assert token_dtype(30522) == np.uint16
    assert token_dtype(65535) == np.uint16
    assert token_dtype(65536) == np.int32


def test_interrupted_build_leaves_no_complete_looking_cache(documents, tokenizer, out_dir):
    def interrupted():
        yield from documents[:25]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_corpus(interrupted(), tokenizer, out_dir / "c", batch_docs=10)
    assert list(out_dir.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="No complete tokenized corpus"):
        TokenizedCorpus.open(out_dir / "c")

    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(interrupted, tokenizer, out_dir / "cache", "tiny", 0, batch_docs=10)
    assert list((out_dir / "cache").iterdir()) == []
    train, _ = prepare_corpus(lambda: iter(documents), tokenizer, out_dir / "cache", "tiny", 0)
    assert train.num_documents == len(documents)


def test_killed_build_leftover_is_not_a_corpus(documents, tokenizer, out_dir):
    corpus = build_corpus(documents, tokenizer, out_dir / "c")
    (corpus.directory / "meta.json").unlink()  # as if killed before meta.json was written
    with pytest.raises(FileNotFoundError, match="missing meta.json"):
        TokenizedCorpus.open(corpus.directory)


def test_prepare_reuses_cache(documents, tokenizer, out_dir):
    calls = []

    def factory():
        calls.append(1)
        return iter(documents)

    train, val = prepare_corpus(factory, tokenizer, out_dir, "tiny-source", 0.1, batch_docs=8)
    assert len(calls) == 1
    tokens_file = train.directory / "tokens.bin"
    mtime = tokens_file.stat().st_mtime_ns
    train2, val2 = prepare_corpus(factory, tokenizer, out_dir, "tiny-source", 0.1)
    assert len(calls) == 1  # opened, not rebuilt
    assert tokens_file.stat().st_mtime_ns == mtime
    assert train2.directory == train.directory
    np.testing.assert_array_equal(train2.tokens, train.tokens)
    # A different key, split or tokenizer is a different cache.
    prepare_corpus(factory, tokenizer, out_dir, "tiny-source", 0.2)
    prepare_corpus(factory, tokenizer, out_dir, "other-source", 0.1)
    assert len(calls) == 3
    assert len([p for p in out_dir.iterdir() if not p.name.startswith(".")]) == 3


@pytest.mark.parametrize("val_documents, expected_val", [(4, 4), (0.25, 10), (0, 0)])
def test_prepare_validation_split(documents, tokenizer, out_dir, val_documents, expected_val):
    train, val = prepare_corpus(
        lambda: iter(documents), tokenizer, out_dir, "tiny", val_documents, batch_docs=6
    )
    assert val.num_documents == expected_val
    assert train.num_documents == len(documents) - expected_val
    # Evenly spaced, deterministic: document i is held out iff the running quota steps up.
    if isinstance(val_documents, float):
        held = [i for i in range(40) if int((i + 1) * val_documents) > int(i * val_documents)]
    else:
        held = [i for i in range(40) if (i + 1) * val_documents // 40 > i * val_documents // 40]
    assert len(held) == expected_val
    _assert_same_documents(val, tokenizer, [documents[i] for i in held])
    _assert_same_documents(
        train, tokenizer, [d for i, d in enumerate(documents) if i not in set(held)]
    )


def test_prepare_empty_source_is_clear(tokenizer, out_dir):
    with pytest.raises(ValueError, match="'files=empty.jsonl' has no documents"):
        prepare_corpus(lambda: iter([]), tokenizer, out_dir, "files=empty.jsonl", 0)
    with pytest.raises(ValueError, match="'files=empty.jsonl' has no documents"):
        prepare_corpus(lambda: iter([]), tokenizer, out_dir, "files=empty.jsonl", 5)
    with pytest.raises(ValueError, match="no documents with any text"):
        prepare_corpus(lambda: iter(["\x00"]), tokenizer, out_dir, "files=junk.jsonl", 0)
    assert not any(out_dir.iterdir())


def test_prepare_rejects_bad_validation_sizes(documents, tokenizer, out_dir):
    with pytest.raises(ValueError, match="leaves no training documents"):
        prepare_corpus(lambda: iter(documents), tokenizer, out_dir, "tiny", 40)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        prepare_corpus(lambda: iter(documents), tokenizer, out_dir, "tiny", 1.5)


def test_prepare_a_fraction_holding_out_nothing_is_an_error(documents, tokenizer, out_dir):
    # 1 % of 40 documents is none: no validation set, and no cache written for it.
    with pytest.raises(ValueError, match=r"val_documents=0\.01 holds out no documents of the 40"):
        prepare_corpus(lambda: iter(documents), tokenizer, out_dir, "tiny", 0.01)
    assert not any(out_dir.iterdir())
    # The fraction is part of the cache key, so the rerun with a fixed value builds anew.
    train, val = prepare_corpus(lambda: iter(documents), tokenizer, out_dir, "tiny", 0.05)
    assert (train.num_documents, val.num_documents) == (38, 2)
