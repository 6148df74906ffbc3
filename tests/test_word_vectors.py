"""Co-occurrence token embeddings (jaxbert/word_vectors.py) and the pretraining option that
starts a model's embedding table with them."""

import numpy as np
import pytest
from test_end_to_end import tiny_pretrain_config

from jaxbert import checkpoint, pretrain, word_vectors


def test_counts_weight_each_pair_by_its_distance_both_ways():
    counts = word_vectors.cooccurrence_counts(np.array([0, 1, 2, 0]), vocab_size=4, window=2)
    expected = np.zeros((4, 4), np.float32)
    for a, b, weight in [(0, 1, 1), (1, 2, 1), (2, 0, 1), (0, 2, 0.5), (1, 0, 0.5)]:
        expected[a, b] += weight
        expected[b, a] += weight
    np.testing.assert_allclose(counts.toarray(), expected)


def test_counts_reject_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="token ids must lie in"):
        word_vectors.cooccurrence_counts(np.array([0, 5]), vocab_size=4)


def test_ppmi_by_hand():
    counts = np.array([[0, 4, 1], [4, 0, 2], [1, 2, 6]], np.float64)
    rows = counts.sum(1)
    context = rows**0.75
    with np.errstate(divide="ignore"):
        pmi = np.log(counts * context.sum() / (rows[:, None] * context[None, :]))
    expected = np.where(counts > 0, np.maximum(pmi, 0), 0)
    np.testing.assert_allclose(word_vectors.ppmi(counts).toarray(), expected, rtol=1e-5)


def test_truncated_svd_finds_the_top_singular_values():
    rng = np.random.default_rng(0)
    matrix = (
        rng.normal(size=(60, 5))
        @ rng.normal(size=(5, 60))
        * [[10, 5, 2, 1, 0.5][i % 5] for i in range(60)]
    ).astype(np.float32)
    u, s = word_vectors.truncated_svd(matrix, rank=3, seed=1)
    np.testing.assert_allclose(s, np.linalg.svd(matrix, compute_uv=False)[:3], rtol=1e-3)
    np.testing.assert_allclose(u.T @ u, np.eye(3), atol=1e-4)


def two_topic_stream(seed=0, sentences=400):
    """Sentences drawn from tokens 0-9 or 10-19 only; tokens 20-23 never occur."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.integers(10 * (i % 2), 10 * (i % 2) + 10, size=12) for i in range(sentences)]
    )


def test_tokens_that_share_contexts_get_close_vectors():
    vectors, found = word_vectors.cooccurrence_embeddings(
        two_topic_stream(), vocab_size=24, dim=8, row_norm=0.5
    )
    assert found[:20].all() and not found[20:].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[:20], axis=1), 0.5, rtol=1e-5)
    assert not vectors[20:].any()
    cosine = vectors[:20] @ vectors[:20].T / 0.25
    same = np.kron(np.eye(2), np.ones((10, 10))).astype(bool) & ~np.eye(20, dtype=bool)
    across = ~np.kron(np.eye(2), np.ones((10, 10))).astype(bool)
    assert cosine[same].mean() > 0.5, cosine[same].mean()
    assert cosine[same].min() > cosine[across].max(), (cosine[same].min(), cosine[across].max())


def test_embedding_dim_above_the_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="cannot factorise a 24-token vocabulary into 32"):
        word_vectors.cooccurrence_embeddings(two_topic_stream(), 24, 32, row_norm=1.0)


def test_pretraining_starts_from_the_corpus_vectors(tmp_path):
    config = tiny_pretrain_config(tmp_path)
    config.model.embedding_init = "cooccurrence"
    config.optim.lr = 1e-7  # two steps that leave the starting table as it was
    config.train.num_steps = config.train.checkpoint_every = config.train.eval_every = 2
    pretrain.pretrain(config, str(tmp_path / "run"))
    params, meta, _ = checkpoint.load_params(str(tmp_path / "run"), which="latest")
    model_config, tokenizer = checkpoint.model_and_tokenizer(meta)
    table = np.asarray(params["bert"]["embeddings"]["word_embeddings"]["embedding"])

    from jaxbert.data.corpus import TokenizedCorpus

    (cache,) = (tmp_path / "cache").glob("*/train")
    vectors, found = word_vectors.cooccurrence_embeddings(
        TokenizedCorpus.open(cache).tokens,
        tokenizer.vocab_size,
        model_config.hidden_size,
        row_norm=1.0,
    )
    assert found.sum() > tokenizer.vocab_size // 2
    rows = np.flatnonzero(found)
    np.testing.assert_allclose(table[rows], vectors[rows], atol=1e-4)
    # The other rows (special tokens, tokens the corpus never uses, padding) keep BERT's init.
    others = np.setdiff1d(np.arange(table.shape[0]), rows)
    assert 0.01 < table[others].std() < 0.03


def test_bad_embedding_init_settings_are_errors(tmp_path):
    config = tiny_pretrain_config(tmp_path)
    config.model.embedding_init = "glove"
    with pytest.raises(ValueError, match="model.embedding_init must be one of"):
        pretrain.pretrain(config, str(tmp_path / "a"))
    config.train.num_steps = 1
    config.model.embedding_init = "normal"
    pretrain.pretrain(config, str(tmp_path / "a"))
    config.model.embedding_init = "cooccurrence"
    config.init_from = str(tmp_path / "a")
    with pytest.raises(ValueError, match="cannot be combined with init_from"):
        pretrain.pretrain(config, str(tmp_path / "b"))
