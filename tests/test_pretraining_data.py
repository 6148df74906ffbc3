import json
import random

import numpy as np
import pytest

from jaxbert.data.corpus import build_corpus
from jaxbert.data.masking import Masker, MaskingConfig
from jaxbert.data.pretraining import PretrainingBatches
from jaxbert.data.sources import iter_documents
from jaxbert.data.tokenizer import BertTokenizer

SPECIALS = frozenset({0, 1, 2, 3, 4})  # [PAD] [UNK] [CLS] [SEP] [MASK] of a trained vocab
MASK_ID, VOCAB = 4, 1000
KEYS = {
    "input_ids": np.int32,
    "segment_ids": np.int32,
    "attention_mask": np.int32,
    "masked_lm_positions": np.int32,
    "masked_lm_ids": np.int32,
    "masked_lm_weights": np.float32,
    "next_sentence_labels": np.int32,
}

_WORDS = "the a cat dog bird river city music old new red blue walks runs sings reads".split()


def _documents(num_documents, min_sentences, max_sentences, seed=0):
    """Documents whose sentences each carry a unique number, so token runs are unique."""
    rng, serial, documents = random.Random(seed), 0, []
    for _ in range(num_documents):
        sentences = []
        for _ in range(rng.randint(min_sentences, max_sentences)):
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 9)))
            sentences.append(f"{words.capitalize()} item {serial}.")
            serial += 1
        documents.append(" ".join(sentences))
    return documents


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(corpus, tokenizer): 120 documents of 1..40 sentences (~50k tokens)."""
    documents = _documents(120, 1, 40)
    tokenizer = BertTokenizer.train(documents, vocab_size=300, min_frequency=1)
    corpus = build_corpus(documents, tokenizer, tmp_path_factory.mktemp("corpus") / "c")
    return corpus, tokenizer


def _document_tokens(corpus):
    return [np.concatenate(corpus.document(d)) for d in range(corpus.num_documents)]


def _locate(documents_tokens, run):
    """(document, start) of every occurrence of the token run."""
    hits = []
    for d, tokens in enumerate(documents_tokens):
        if len(run) > len(tokens):
            continue
        windows = np.lib.stride_tricks.sliding_window_view(tokens, len(run))
        hits += [(d, int(s)) for s in np.flatnonzero((windows == run).all(axis=1))]
    return hits


def _unmasked(batch):
    """input_ids with the original tokens put back at the masked positions."""
    ids = batch["input_ids"].copy()
    rows, slots = np.nonzero(batch["masked_lm_weights"])
    ids[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows, slots]
    return ids


def _segments(batch, tokenizer):
    """Per row: (A tokens, B tokens) from an unmasked NSP batch."""
    ids, out = _unmasked(batch), []
    for row, segment in zip(ids, batch["segment_ids"], strict=True):
        real = row[row != tokenizer.pad_id]
        seg = segment[: len(real)]
        a, b = real[1:][seg[1:] == 0][:-1], real[seg == 1][:-1]
        out.append((a, b))
    return out


# ---- masking --------------------------------------------------------------------------------


def _sequences(num, length, num_real, seed=0):
    """[CLS] real... [SEP] [PAD]...: num_real non-special tokens per row."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((num, length), dtype=np.int32)
    ids[:, 0] = 2
    ids[:, 1 : num_real + 1] = rng.integers(5, VOCAB, (num, num_real))
    ids[:, num_real + 1] = 3
    return ids


def test_masking_rate_and_80_10_10_split():
    num, num_real = 2000, 100  # 15 % of 100 = exactly 15 predictions per sequence
    ids = _sequences(num, 128, num_real)
    masking = MaskingConfig(max_predictions=40)
    masker = Masker(special_ids=SPECIALS, vocab_size=VOCAB, mask_id=MASK_ID, masking=masking)
    masked, positions, labels, weights = masker(ids, np.random.default_rng(0))
    assert (weights.sum(axis=1) == 15).all()
    assert (weights[:, 15:] == 0).all() and (positions[:, 15:] == 0).all()
    rows = np.repeat(np.arange(num), 15)
    pos = positions[:, :15].reshape(-1)
    np.testing.assert_array_equal(labels[:, :15].reshape(-1), ids[rows, pos])
    new = masked[rows, pos]
    n = len(new)
    for name, observed, p in [
        ("mask", np.mean(new == MASK_ID), 0.8),
        # A random draw equals the original with probability 1/995.
        ("random", np.mean((new != MASK_ID) & (new != ids[rows, pos])), 0.1 * (1 - 1 / 995)),
        ("keep", np.mean(new == ids[rows, pos]), 0.1 + 0.1 / 995),
    ]:
        assert abs(observed - p) < 5 * np.sqrt(p * (1 - p) / n), (name, observed)
    # Only chosen positions change.
    unchanged = np.ones_like(ids, dtype=bool)
    unchanged[rows, pos] = False
    np.testing.assert_array_equal(masked[unchanged], ids[unchanged])
    # Every real position is equally likely: Binomial(2000, 0.15) per position.
    counts = np.bincount(pos, minlength=128)
    mean, sd = num * 0.15, np.sqrt(num * 0.15 * 0.85)
    assert (np.abs(counts[1 : num_real + 1] - mean) < 5 * sd).all()
    assert counts[0] == 0 and counts[num_real + 1 :].sum() == 0


def test_masked_count_rounding_and_cap():
    rng = np.random.default_rng(1)
    kwargs = dict(special_ids=SPECIALS, vocab_size=VOCAB, mask_id=MASK_ID)
    for num_real, cap, expected in [(3, 20, 1), (10, 20, 2), (50, 20, 8), (300, 20, 20)]:
        (ids,) = _sequences(1, 512, num_real)
        masker = Masker(masking=MaskingConfig(max_predictions=cap), **kwargs)
        masked, positions, labels, weights = (a[0] for a in masker(ids[None], rng))
        assert positions.shape == labels.shape == weights.shape == (cap,)
        assert weights.sum() == expected, num_real
        real = positions[weights > 0]
        assert (np.diff(real) > 0).all()  # sorted, distinct
        assert ((real >= 1) & (real <= num_real)).all()
    # No candidates at all: nothing is masked.
    masked, _, _, weights = Masker(masking=MaskingConfig(), **kwargs)(np.array([[2, 3, 0, 0]]), rng)
    assert weights.sum() == 0 and masked.tolist() == [[2, 3, 0, 0]]


def test_specials_never_masked_and_never_drawn():
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 40, (500, 64)).astype(np.int32)  # many specials, scattered
    masking = MaskingConfig(
        masked_lm_prob=0.5, max_predictions=64, mask_prob=0.0, random_prob=1.0, keep_prob=0.0
    )
    masker = Masker(special_ids=SPECIALS, vocab_size=40, mask_id=MASK_ID, masking=masking)
    masked, positions, labels, weights = masker(ids, rng)
    rows, slots = np.nonzero(weights)
    chosen = positions[rows, slots]
    assert not np.isin(ids[rows, chosen], list(SPECIALS)).any()
    assert not np.isin(masked[rows, chosen], list(SPECIALS)).any()  # replacements: non-special
    assert (masked[rows, chosen] < 40).all()
    specials = np.isin(ids, list(SPECIALS))
    np.testing.assert_array_equal(masked[specials], ids[specials])


def test_whole_word_masking_takes_whole_words():
    rng = np.random.default_rng(3)
    is_subword = np.zeros(VOCAB, dtype=bool)
    is_subword[500:] = True  # ids >= 500 are '##' continuation pieces
    ids = _sequences(1000, 64, 60, seed=3)
    masking = MaskingConfig(whole_word_mask=True, max_predictions=20)
    masker = Masker(
        special_ids=SPECIALS, vocab_size=VOCAB, mask_id=MASK_ID, masking=masking,
        is_subword=is_subword,
    )  # fmt: skip
    masked, positions, labels, weights = masker(ids, rng)
    total = 0
    for row in range(len(ids)):
        chosen = set(positions[row][weights[row] > 0].tolist())
        assert 1 <= len(chosen) <= 9  # round(60 * 0.15) = 9
        total += len(chosen)
        # Words start at a non-'##' token, a special token, or right after a special token.
        special = np.isin(ids[row], list(SPECIALS))
        starts = ~is_subword[ids[row]] | special
        starts[1:] |= special[:-1]
        word = np.cumsum(starts)
        for p in chosen:
            assert set(np.flatnonzero(word == word[p]).tolist()) <= chosen
    # The greedy fill reaches the quota nearly always (skipped words leave few gaps).
    assert total / len(ids) > 8.5


# ---- pretraining batches --------------------------------------------------------------------


def test_batch_shapes_dtypes_and_layout(setup):
    corpus, tokenizer = setup
    batches = PretrainingBatches(corpus, tokenizer, batch_size=16, max_len=64)
    batch = next(batches)
    assert set(batch) == set(KEYS)
    for key, dtype in KEYS.items():
        assert batch[key].dtype == dtype, key
    assert batch["input_ids"].shape == batch["segment_ids"].shape == (16, 64)
    assert batch["attention_mask"].shape == (16, 64)
    assert batch["masked_lm_positions"].shape == batch["masked_lm_weights"].shape == (16, 20)
    assert batch["next_sentence_labels"].shape == (16,)
    ids, attention = _unmasked(batch), batch["attention_mask"]
    for row in range(16):
        length = attention[row].sum()
        assert (attention[row, :length] == 1).all() and (attention[row, length:] == 0).all()
        assert (ids[row, length:] == tokenizer.pad_id).all()
        assert ids[row, 0] == tokenizer.cls_id and ids[row, length - 1] == tokenizer.sep_id
        seps = np.flatnonzero(ids[row, :length] == tokenizer.sep_id)
        assert len(seps) == 2
        segment = batch["segment_ids"][row]
        assert (segment[: seps[0] + 1] == 0).all() and (segment[seps[0] + 1 : length] == 1).all()
        assert (segment[length:] == 0).all()
        weights = batch["masked_lm_weights"][row]
        positions = batch["masked_lm_positions"][row][weights > 0]
        assert len(positions) == min(20, max(1, round((length - 3) * 0.15)))
        assert not np.isin(ids[row, positions], list(tokenizer.special_ids)).any()


def test_every_sentence_used_once_per_epoch(setup):
    corpus, tokenizer = setup
    batches = PretrainingBatches(corpus, tokenizer, batch_size=8, max_len=48)
    plan = batches._plan(0)
    used = np.zeros(corpus.num_sentences, dtype=int)
    for a_start, a_end, b_end in zip(plan.a_start, plan.a_end, plan.b_end, strict=True):
        used[a_start : max(a_end, b_end)] += 1
    assert (used == 1).all()


def test_is_next_b_is_the_continuation(setup):
    corpus, tokenizer = setup
    docs = _document_tokens(corpus)
    batches = PretrainingBatches(corpus, tokenizer, batch_size=64, max_len=64, seed=4)
    checked = {0: 0, 1: 0}
    for batch in [next(batches) for _ in range(4)]:
        labels = batch["next_sentence_labels"]
        for (a, b), label in zip(_segments(batch, tokenizer), labels, strict=True):
            hits_a, hits_b = _locate(docs, a), _locate(docs, b)
            assert hits_a and hits_b  # both are contiguous runs of the corpus
            if len(hits_a) > 1 or len(hits_b) > 1:
                continue  # a run too short to be unique (e.g. one common token)
            ((doc_a, start_a),), ((doc_b, start_b),) = hits_a, hits_b
            if label == 0:  # IsNext: B follows A in the same document (ends may be trimmed)
                assert doc_b == doc_a and start_b >= start_a + len(a)
            else:  # NotNext: B from another document
                assert doc_b != doc_a
            checked[int(label)] += 1
    assert min(checked.values()) > 50


def test_is_next_without_truncation_is_exact_continuation(setup):
    corpus, tokenizer = setup
    docs = _document_tokens(corpus)
    batches = PretrainingBatches(
        corpus, tokenizer, batch_size=64, max_len=512, short_seq_prob=0.0, seed=5
    )
    batch, exact = next(batches), 0
    labels = batch["next_sentence_labels"]
    for (a, b), label in zip(_segments(batch, tokenizer), labels, strict=True):
        if label == 0 and len(a) + len(b) < 512 - 3:  # shorter than the limit: not truncated
            assert len(_locate(docs, np.concatenate([a, b]))) == 1  # B starts where A ends
            exact += 1
    assert exact > 10


def test_nsp_labels_balanced(setup):
    corpus, tokenizer = setup
    batches = PretrainingBatches(corpus, tokenizer, batch_size=100, max_len=32, seed=6)
    labels = np.concatenate([next(batches)["next_sentence_labels"] for _ in range(150)])
    n, not_next = len(labels), labels.mean()
    sd = np.sqrt(0.25 / n)
    # NotNext is forced when a document's last chunk is a single sentence (no continuation):
    # at most once per document per epoch, about 15000 / plan-size epochs here.
    plan_size = batches._plan(0).size
    forced = corpus.num_documents / plan_size
    assert 0.5 - 5 * sd < not_next < 0.5 + 5 * sd + forced, (not_next, forced)


def test_deterministic_and_seed_dependent(setup):
    corpus, tokenizer = setup
    make = lambda seed: PretrainingBatches(corpus, tokenizer, batch_size=32, max_len=48, seed=seed)  # noqa: E731
    first, second, other = make(0), make(0), make(1)
    for _ in range(5):
        a, b, c = next(first), next(second), next(other)
        for key in KEYS:
            np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a["input_ids"], c["input_ids"])


@pytest.mark.parametrize("nsp", [True, False])
def test_resume_is_exact(setup, nsp):
    corpus, tokenizer = setup
    kwargs = dict(batch_size=64, max_len=48, nsp=nsp, seed=7)
    reference = PretrainingBatches(corpus, tokenizer, **kwargs)
    per_epoch = reference.batches_in_epoch(0)
    k = per_epoch + 3  # past an epoch boundary
    uninterrupted = [next(reference) for _ in range(k + 4)]

    interrupted = PretrainingBatches(corpus, tokenizer, **kwargs)
    for _ in range(k):
        next(interrupted)
    state = json.loads(json.dumps(interrupted.state()))
    assert state["epoch"] == 1 and state["batch_index"] == 3
    resumed = PretrainingBatches(corpus, tokenizer, **kwargs)
    resumed.restore(state)
    for want in uninterrupted[k:]:
        got = next(resumed)
        for key in KEYS:
            np.testing.assert_array_equal(got[key], want[key])


def test_restore_rejects_other_settings(setup):
    corpus, tokenizer = setup
    state = PretrainingBatches(corpus, tokenizer, batch_size=8, seed=1).state()
    with pytest.raises(ValueError, match="seed=1"):
        PretrainingBatches(corpus, tokenizer, batch_size=8, seed=2).restore(state)


def test_new_masking_every_epoch(setup):
    corpus, tokenizer = setup
    batches = PretrainingBatches(corpus, tokenizer, batch_size=32, max_len=48, nsp=False)
    epochs = []
    for _ in range(2):
        n = batches.batches_in_epoch(batches.state()["epoch"])
        epochs.append([next(batches) for _ in range(n)])
    # Same windows can recur across epochs (different offset), never with the same masking.
    assert not any(
        np.array_equal(a["input_ids"], b["input_ids"]) for a in epochs[0] for b in epochs[1]
    )


def test_packed_sequences_fill_full_length(setup):
    corpus, tokenizer = setup
    stream = np.concatenate([np.append(d, tokenizer.sep_id) for d in _document_tokens(corpus)])
    batches = PretrainingBatches(corpus, tokenizer, batch_size=32, max_len=64, nsp=False)
    for batch in [next(batches) for _ in range(3)]:
        assert (batch["attention_mask"] == 1).all()
        assert (batch["segment_ids"] == 0).all()
        assert (batch["next_sentence_labels"] == 0).all()
        ids = _unmasked(batch)
        assert (ids[:, 0] == tokenizer.cls_id).all() and (ids[:, -1] == tokenizer.sep_id).all()
        windows = np.lib.stride_tricks.sliding_window_view(stream, 62)
        for row in ids[:, 1:-1]:
            assert (windows == row).all(axis=1).any()  # a contiguous slice of the stream
    assert (stream == tokenizer.sep_id).sum() == corpus.num_documents  # crossing docs via [SEP]


def test_fixed_batches_stable(setup):
    corpus, tokenizer = setup
    batches = PretrainingBatches(corpus, tokenizer, batch_size=16, max_len=48)
    first = batches.fixed_batches(3)
    for _ in range(7):
        next(batches)
    again = PretrainingBatches(corpus, tokenizer, batch_size=16, max_len=48).fixed_batches(3)
    for x, y, z in zip(first, batches.fixed_batches(3), again, strict=True):
        for key in KEYS:
            np.testing.assert_array_equal(x[key], y[key])
            np.testing.assert_array_equal(x[key], z[key])
    assert batches.state() == {**batches.state(), "epoch": 0, "batch_index": 7}


def test_small_corpus_wraps_and_single_document(tmp_path, tiny_corpus_dir):
    texts = list(iter_documents(files=str(tiny_corpus_dir / "corpus.txt"), max_docs=2))
    tokenizer = BertTokenizer.train(texts, vocab_size=100, min_frequency=1)
    for name, documents, nsp in [
        ("two", texts, True),
        ("two", texts, False),
        ("one", texts[1:], False),
    ]:
        corpus = build_corpus(documents, tokenizer, tmp_path / name)
        batches = PretrainingBatches(corpus, tokenizer, batch_size=8, max_len=32, nsp=nsp)
        for _ in range(3):
            batch = next(batches)
            assert batch["input_ids"].shape == (8, 32)
    # NotNext segments come from another document: with one, NSP would learn from its own text.
    with pytest.raises(ValueError, match=r"has 1 document; next-sentence prediction needs at lea"):
        PretrainingBatches(corpus, tokenizer, batch_size=8, max_len=32, nsp=True)
    with pytest.raises(ValueError, match=r"separated by blank lines.*data\.nsp=False"):
        PretrainingBatches(corpus, tokenizer, batch_size=8, max_len=32)


def test_mismatched_tokenizer_or_vocab_rejected(setup):
    corpus, tokenizer = setup
    other = BertTokenizer.train(_documents(5, 1, 3, seed=9), vocab_size=120, min_frequency=1)
    with pytest.raises(ValueError, match="rebuild the corpus"):
        PretrainingBatches(corpus, other, batch_size=4)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        PretrainingBatches(corpus, tokenizer, batch_size=4, vocab_size=10)
