"""Length-bucketed pair batching: shapes, coverage, determinism, resume, padding."""

import collections

import numpy as np
import pytest

from jaxbert.data import nli
from jaxbert.data.pair_batches import PairBatches, TokenizedPairs, bucket_length

PAD, CLS, SEP = 0, 1, 2
BUCKETS = (8, 16, 32, 64)


class WordTokenizer:
    """Stand-in for BertTokenizer.encode_batch: one id per word, [CLS] ... [SEP]."""

    pad_id = PAD

    def encode_batch(self, texts, add_special_tokens=True, max_length=None):
        out = []
        for text in texts:
            ids = [CLS] + [3 + len(word) for word in text.split()] + [SEP]
            if max_length is not None and len(ids) > max_length:
                ids = ids[: max_length - 1] + [SEP]
            out.append(np.asarray(ids, np.int32))
        return out


def toy_dataset(n=500, seed=0, triplets=False, scores=False):
    rng = np.random.default_rng(seed)

    def sentences():
        # short sentences with a long tail, like NLI data
        return [" ".join(["w"] * int(k)) for k in np.minimum(rng.geometric(1 / 12, n), 70)]

    labels = rng.random(n).astype(np.float32) if scores else rng.integers(0, 3, n, np.int32)
    names = () if scores else nli.NLI_LABELS
    third = sentences() if triplets else None
    return nli.PairDataset(sentences(), sentences(), labels, names, "toy", {}, sentence3=third)


def build(n=500, max_len=64, **kw):
    return TokenizedPairs.build(toy_dataset(n, **kw), WordTokenizer(), max_len=max_len, chunk=97)


def test_build_is_compact_and_truncates_keeping_sep():
    data = toy_dataset(300)
    pairs = TokenizedPairs.build(data, WordTokenizer(), max_len=16, chunk=64)
    assert pairs.tokens[0].dtype == np.int32 and pairs.offsets[0].dtype == np.int64
    assert pairs.num_columns == 2 and len(pairs) == 300
    lengths = pairs.lengths()
    assert lengths.max() == 16
    expected = [min(len(s.split()) + 2, 16) for s in data.sentence1]
    assert lengths[0].tolist() == expected
    for i in (0, 7, 299):
        sentence = pairs.sentence(1, i)
        assert sentence[0] == CLS and sentence[-1] == SEP


def test_bucket_length():
    assert bucket_length(1, BUCKETS) == 8
    assert bucket_length(8, BUCKETS) == 8
    assert bucket_length(9, BUCKETS) == 16
    with pytest.raises(ValueError, match="exceeds the largest bucket 64"):
        bucket_length(65, BUCKETS)


def test_batches_use_buckets_and_cover_each_pair_once_per_epoch():
    pairs = build(500)
    batches = PairBatches(pairs, batch_size=32, buckets=BUCKETS, pad_id=PAD, chunk_batches=4)
    assert len(batches) == 500 // 32
    lengths = pairs.lengths().max(axis=0)
    for epoch in range(2):
        plan = batches.epoch_plan(epoch)
        seen = plan.ravel()
        assert len(set(seen.tolist())) == len(seen) == len(batches) * 32
        shapes = collections.Counter()
        for indices in plan:
            batch = next(batches)
            width = batch["input_ids_a"].shape[1]
            shapes[width] += 1
            assert width in BUCKETS and width >= lengths[indices].max()
            assert bucket_length(int(lengths[indices].max()), BUCKETS) == width
            for side in "ab":
                assert batch[f"input_ids_{side}"].shape == (32, width)
                assert batch[f"input_ids_{side}"].dtype == np.int32
                assert batch[f"attention_mask_{side}"].shape == (32, width)
            np.testing.assert_array_equal(batch["labels"], pairs.labels[indices])
            assert batch["weights"].tolist() == [1.0] * 32
        assert len(shapes) <= len(BUCKETS)
    assert not np.array_equal(batches.epoch_plan(0), batches.epoch_plan(1))


def test_batch_content_matches_the_tokens():
    pairs = build(100, triplets=True)
    batches = PairBatches(pairs, batch_size=8, buckets=BUCKETS, pad_id=PAD)
    batch = next(batches)
    indices = batches.epoch_plan(0)[0]
    for column, side in enumerate("abc"):
        for row, i in enumerate(indices):
            tokens = pairs.sentence(column, i)
            ids, mask = batch[f"input_ids_{side}"][row], batch[f"attention_mask_{side}"][row]
            np.testing.assert_array_equal(ids[: len(tokens)], tokens)
            assert (ids[len(tokens) :] == PAD).all()
            assert mask.sum() == len(tokens) and mask[: len(tokens)].all()


def test_determinism_and_exact_resume():
    pairs = build(300, scores=True)

    def make():
        return PairBatches(pairs, batch_size=16, buckets=BUCKETS, pad_id=PAD, seed=3)

    reference = make()
    stream = [next(reference) for _ in range(45)]  # crosses two epoch boundaries (18 per epoch)
    again = make()
    for expected in stream[:20]:
        got = next(again)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    state = again.state()
    assert state["epoch"] == 1 and state["batch"] == 2
    resumed = make()
    resumed.restore(state)
    for expected in stream[20:]:
        got = next(resumed)
        assert got["labels"].dtype == np.float32
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    other_seed = PairBatches(pairs, batch_size=16, buckets=BUCKETS, pad_id=PAD, seed=4)
    assert not np.array_equal(other_seed.epoch_plan(0), reference.epoch_plan(0))
    with pytest.raises(ValueError, match="seed=3.*seed=4"):
        other_seed.restore(state)


def test_epoch_batches_cover_everything_once_with_weights():
    pairs = build(103)
    batches = PairBatches(pairs, batch_size=16, buckets=BUCKETS, pad_id=PAD)
    for sort in (True, False):
        seen, weights = [], 0.0
        for batch in batches.epoch_batches(sort_by_length=sort):
            assert batch["input_ids_a"].shape[0] == 16
            real = batch["weights"] > 0
            assert (batch["index"][~real] == -1).all()
            # padding rows repeat a real row, so no sentence is all padding
            assert batch["attention_mask_a"].sum(axis=1).min() > 0
            seen.extend(batch["index"][real].tolist())
            weights += batch["weights"].sum()
        assert sorted(seen) == list(range(103)) and weights == 103
        if not sort:
            assert seen == list(range(103))
    assert batches.state()["batch"] == 0  # evaluation does not move training


def test_no_drop_remainder_pads_the_last_batch():
    pairs = build(50)
    batches = PairBatches(pairs, batch_size=16, buckets=BUCKETS, pad_id=PAD, drop_remainder=False)
    assert len(batches) == 4
    weights = sum(next(batches)["weights"].sum() for _ in range(len(batches)))
    assert weights == 50


def test_padding_is_lower_than_padding_to_the_max_bucket():
    pairs = build(1000)
    batches = PairBatches(pairs, batch_size=32, buckets=BUCKETS, pad_id=PAD)
    lengths = pairs.lengths()[:, batches.epoch_plan(0).ravel()]
    fixed = 1.0 - lengths.sum() / (lengths.size * BUCKETS[-1])
    assert 0.0 < batches.padding_fraction() < fixed - 0.1
    unsorted = PairBatches(pairs, batch_size=32, buckets=BUCKETS, pad_id=PAD, chunk_batches=1)
    assert batches.padding_fraction() < unsorted.padding_fraction()


def test_save_load_roundtrip(tmp_path):
    pairs = build(40, triplets=True)
    pairs.save(tmp_path / "pairs.npz")
    loaded = TokenizedPairs.load(tmp_path / "pairs.npz")
    assert loaded.num_columns == 3 and loaded.label_names == pairs.label_names
    for k in range(3):
        np.testing.assert_array_equal(loaded.tokens[k], pairs.tokens[k])
        np.testing.assert_array_equal(loaded.offsets[k], pairs.offsets[k])


def test_errors_are_helpful():
    pairs = build(10, max_len=64)
    with pytest.raises(ValueError, match="more than the largest bucket 16"):
        PairBatches(pairs, batch_size=4, buckets=(8, 16), pad_id=PAD)
    with pytest.raises(ValueError, match="make no batch of 32"):
        PairBatches(pairs, batch_size=32, buckets=BUCKETS, pad_id=PAD)
