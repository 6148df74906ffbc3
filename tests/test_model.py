"""BERT model: shapes of every named size, padding invariance, dtypes, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbert import hf
from jaxbert.model import (
    SIZES,
    BertConfig,
    BertForPreTraining,
    BertModel,
    Dropout,
    dropout_bits,
    gelu,
    padded_vocab_size,
)
from jaxbert.sbert import SentenceBert, pair_features, pool

# Parameter counts of Hugging Face bert-base-uncased (BertModel / BertForPreTraining).
BERT_BASE_ENCODER = 109_482_240
BERT_BASE_PRETRAINING = 110_106_428


def _init_shapes(config, batch=2, seq=16, predictions=4):
    ids = jnp.zeros((batch, seq), jnp.int32)
    positions = jnp.zeros((batch, predictions), jnp.int32)
    model = BertForPreTraining(config)

    def init_and_apply():
        variables = model.init(jax.random.key(0), ids, ids, ids + 1, positions)
        return variables, model.apply(variables, ids, ids, ids + 1, positions)

    return jax.eval_shape(init_and_apply)


@pytest.mark.parametrize("size", list(SIZES))
def test_every_named_size_has_consistent_shapes(size):
    config = BertConfig.from_size(size)
    variables, out = _init_shapes(config)
    params = variables["params"]
    hidden = SIZES[size]["hidden_size"]
    assert out.mlm_logits.shape == (2, 4, config.vocab_size)
    assert out.nsp_logits.shape == (2, 2)
    layers = params["bert"]["encoder"]["layer"]
    assert len(layers) == SIZES[size]["num_layers"]
    assert layers["0"]["intermediate"]["dense"]["kernel"].shape == (hidden, 4 * hidden)
    assert params["bert"]["embeddings"]["word_embeddings"]["embedding"].shape == (30522, hidden)


def test_base_parameter_count_matches_hugging_face():
    variables, _ = _init_shapes(BertConfig.from_size("base"))
    count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))  # noqa: E731
    assert count(variables["params"]["bert"]) == BERT_BASE_ENCODER
    assert count(variables["params"]) == BERT_BASE_PRETRAINING


def test_config_validation():
    with pytest.raises(ValueError, match="unknown model size"):
        BertConfig.from_size("huge")
    with pytest.raises(ValueError, match="not divisible"):
        BertConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="dtype"):
        BertConfig(dtype="float64")
    with pytest.raises(ValueError, match="unknown BertConfig fields"):
        BertConfig.from_dict({"hidden": 3})
    assert BertConfig.from_dict(BertConfig.from_size("mini").to_dict()) == BertConfig.from_size(
        "mini"
    )
    assert padded_vocab_size(30522, 128) == 30592
    assert padded_vocab_size(30522, 1) == 30522
    with pytest.raises(ValueError, match="embedding_size"):
        BertConfig.from_size("tiny", embedding_size=128)  # not below hidden_size 128


def _tiny(**overrides):
    return BertConfig.from_size("tiny", vocab_size=97, max_position_embeddings=64, **overrides)


def _random_batch(rng, batch, seq, vocab=97):
    ids = rng.integers(5, vocab, (batch, seq)).astype(np.int32)
    segments = (np.arange(seq)[None, :] >= seq // 2).astype(np.int32).repeat(batch, 0)
    return ids, segments


def test_padding_does_not_change_real_positions():
    config = _tiny(hidden_dropout=0.0, attention_dropout=0.0)
    model = BertModel(config)
    rng = np.random.default_rng(0)
    ids, segments = _random_batch(rng, 3, 10)
    params = model.init(jax.random.key(1), ids, segments, np.ones_like(ids))["params"]
    short = model.apply({"params": params}, ids, segments, np.ones_like(ids))
    pad = np.zeros((3, 6), np.int32)
    padded_ids = np.concatenate([ids, pad + 1], axis=1)  # padding holds arbitrary token ids
    mask = np.concatenate([np.ones_like(ids), pad], axis=1)
    long = model.apply(
        {"params": params}, padded_ids, np.concatenate([segments, pad], axis=1), mask
    )
    np.testing.assert_allclose(long.hidden_states[:, :10], short.hidden_states, atol=1e-5)
    np.testing.assert_allclose(long.pooled_output, short.pooled_output, atol=1e-5)


def test_dropout_is_active_only_when_training():
    config = _tiny()
    model = BertModel(config)
    ids, segments = _random_batch(np.random.default_rng(0), 2, 8)
    params = model.init(jax.random.key(1), ids, segments)["params"]
    eval_a = model.apply({"params": params}, ids, segments)
    eval_b = model.apply({"params": params}, ids, segments)
    train = model.apply(
        {"params": params}, ids, segments, deterministic=False, rngs={"dropout": jax.random.key(2)}
    )
    np.testing.assert_array_equal(eval_a.hidden_states, eval_b.hidden_states)
    assert not np.allclose(train.hidden_states, eval_a.hidden_states)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_keeps_the_right_fraction_and_expectation(impl, rate):
    x = jnp.full((400, 501), 2.0, jnp.bfloat16)  # an odd last axis: one lane of a hash unused
    y = Dropout(rate).apply(
        {}, x, deterministic=False, rngs={"dropout": jax.random.key(0, impl=impl)}
    )
    y = np.asarray(y, np.float32)
    assert set(np.unique(y)) <= {0.0, float(jnp.bfloat16(2.0 / (1 - rate)))}
    assert abs((y == 0).mean() - rate) < 0.005  # 200k draws: the std of the fraction is < 0.0012
    assert abs(y.mean() - 2.0) < 0.03
    other = Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert not np.array_equal(y, np.asarray(other, np.float32))
    np.testing.assert_array_equal(Dropout(rate).apply({}, x, deterministic=True), x)
    assert (
        not Dropout(1.0)
        .apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
        .any()
    )
    rngs = {"dropout": jax.random.key(0)}
    scalar = Dropout(rate).apply({}, jnp.float32(3.0), deterministic=False, rngs=rngs)
    assert scalar.shape == () and float(scalar) in (0.0, pytest.approx(3.0 / (1 - rate)))


def _pair_chi2_z(x, y, bins=16):
    """z-score of a chi-square test that the top 4 bits of x and of y are independent and
    uniform (255 degrees of freedom)."""
    counts = np.histogram2d(x >> 12, y >> 12, bins=bins, range=[[0, bins], [0, bins]])[0]
    expected = x.size / bins**2
    chi2 = ((counts - expected) ** 2 / expected).sum()
    return (chi2 - (bins**2 - 1)) / np.sqrt(2 * (bins**2 - 1))


def test_dropout_bits_look_uniform_and_independent():
    bits = np.asarray(dropout_bits(jax.random.key(7), (1024, 512))).astype(np.int64)
    assert bits.min() >= 0 and bits.max() < 2**16
    flat = bits.ravel()
    for k in range(16):  # each bit is a fair coin: |z| < 5
        assert abs(((flat >> k) & 1).mean() - 0.5) < 5 * np.sqrt(0.25 / flat.size), k
    pairs = {
        "neighbours in a row": (bits[:, :-1], bits[:, 1:]),
        "the two lanes of one hash": (bits[:, :256], bits[:, 256:]),
        "neighbouring rows": (bits[:-1], bits[1:]),
        "low bits of neighbours": ((bits[:, :-1] & 0xF) << 12, (bits[:, 1:] & 0xF) << 12),
    }
    for name, (x, y) in pairs.items():
        assert abs(_pair_chi2_z(x.ravel(), y.ravel())) < 5, name
    # Masks of different Dropout calls (keys folded from one, as flax and the train step do)
    # agree as often as independent ones: 0.9**2 + 0.1**2 for keep 0.9.
    key = jax.random.key(3)
    keys = [jax.random.fold_in(key, i) for i in range(16)]
    masks = np.stack([np.asarray(dropout_bits(k, (128, 768))) < 58982 for k in keys])
    agree = (masks[:, None] == masks[None]).mean(axis=(2, 3))[~np.eye(16, dtype=bool)]
    assert np.abs(agree - 0.82).max() < 0.01  # std of one pair's rate ~0.0014
    # The bits depend on the key and the global shape only, not on how it is computed.
    np.testing.assert_array_equal(
        np.asarray(jax.jit(dropout_bits, static_argnums=1)(jax.random.key(7), (1024, 512))), bits
    )


def test_gelu_is_the_exact_erf_gelu_with_its_gradient():
    x = jnp.linspace(-12.0, 12.0, 4001)
    exact = jax.nn.gelu(x, approximate=False)
    np.testing.assert_allclose(gelu(x), exact, atol=2e-6)
    np.testing.assert_allclose(gelu(x)[:5], 0.0, atol=1e-20)  # far left tail is 0, not NaN
    grad = jax.vmap(jax.grad(gelu))(x)
    np.testing.assert_allclose(
        grad, jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, False)))(x), atol=2e-6
    )
    # The custom VJP still differentiates twice (Hessian-vector products): gelu''(0) = 2 phi(0).
    second = jax.grad(jax.grad(gelu))(0.0)
    np.testing.assert_allclose(second, 2 / np.sqrt(2 * np.pi), rtol=1e-6)
    half = gelu(x.astype(jnp.bfloat16))
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(half.astype(jnp.float32), exact, rtol=1e-2, atol=1e-2)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    config = _tiny(dtype="bfloat16", attention_impl="cudnn")  # cuDNN falls back to XLA on CPU
    model = BertForPreTraining(config)
    ids, segments = _random_batch(np.random.default_rng(0), 2, 8)
    positions = np.array([[1, 2], [3, 0]], np.int32)
    variables = model.init(jax.random.key(0), ids, segments, np.ones_like(ids), positions)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    out = model.apply(variables, ids, segments, np.ones_like(ids), positions)
    assert out.mlm_logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(out.mlm_logits)).all()
    reference = BertForPreTraining(_tiny()).apply(
        variables, ids, segments, np.ones_like(ids), positions
    )
    # bf16 has ~3 significant digits; the logits must still be close to float32's.
    np.testing.assert_allclose(out.mlm_logits, reference.mlm_logits, atol=0.1)


def test_mlm_head_reads_only_the_masked_positions():
    config = _tiny(hidden_dropout=0.0, attention_dropout=0.0)
    model = BertForPreTraining(config)
    ids, segments = _random_batch(np.random.default_rng(0), 2, 8)
    mask = np.ones_like(ids)
    positions = np.array([[1, 5], [0, 7]], np.int32)
    variables = model.init(jax.random.key(0), ids, segments, mask, positions)
    out = model.apply(variables, ids, segments, mask, positions)
    flipped = model.apply(variables, ids, segments, mask, positions[:, ::-1])
    np.testing.assert_allclose(out.mlm_logits[:, ::-1], flipped.mlm_logits, atol=1e-6)


def test_a_factorised_embedding_is_the_model_with_its_table_multiplied_out():
    config = _tiny(hidden_dropout=0.0, attention_dropout=0.0, embedding_size=16)
    model = BertForPreTraining(config)
    ids, segments = _random_batch(np.random.default_rng(0), 2, 8)
    mask, positions = np.ones_like(ids), np.array([[1, 5], [0, 7]], np.int32)
    params = model.init(jax.random.key(0), ids, segments, mask, positions)["params"]
    embeddings = params["bert"]["embeddings"]
    assert embeddings["word_embeddings"]["embedding"].shape == (97, 16)
    assert embeddings["word_embeddings_projection"].shape == (16, 128)
    plain_config, plain = hf.unfactorized(config, params)
    assert plain_config.embedding_size == 0
    assert "word_embeddings_projection" not in plain["bert"]["embeddings"]
    assert plain["bert"]["embeddings"]["word_embeddings"]["embedding"].shape == (97, 128)
    out = model.apply({"params": params}, ids, segments, mask, positions)
    reference = BertForPreTraining(plain_config).apply(
        {"params": plain}, ids, segments, mask, positions
    )
    # The encoder and the MLM decoder tied to the table both see the product.
    np.testing.assert_allclose(out.mlm_logits, reference.mlm_logits, atol=1e-4)
    np.testing.assert_allclose(out.nsp_logits, reference.nsp_logits, atol=1e-5)


def test_mean_pooling_ignores_padding_and_max_and_cls():
    hidden = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = jnp.array([[1, 1, 0]])
    np.testing.assert_allclose(pool(hidden, mask, "mean"), [[2.0, 3.0]])
    np.testing.assert_allclose(pool(hidden, mask, "max"), [[3.0, 4.0]])
    np.testing.assert_allclose(pool(hidden, mask, "cls"), [[1.0, 2.0]])
    assert np.isfinite(pool(hidden, jnp.zeros_like(mask), "mean")).all()
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(hidden, mask, "sum")


def test_siamese_head_is_symmetric_in_its_symmetric_features():
    u = jnp.array([[1.0, -2.0]])
    v = jnp.array([[0.5, 3.0]])
    both = pair_features(u, v, ("u", "v", "|u-v|", "u*v"))
    swapped = pair_features(v, u, ("u", "v", "|u-v|", "u*v"))
    np.testing.assert_allclose(both[:, 4:], swapped[:, 4:])  # |u-v| and u*v do not care
    np.testing.assert_allclose(both[:, :2], swapped[:, 2:4])
    with pytest.raises(ValueError, match="unknown pair features"):
        pair_features(u, v, ("u", "u+v"))


def test_sentence_embedding_does_not_depend_on_batch_neighbours():
    config = _tiny(hidden_dropout=0.0, attention_dropout=0.0)
    model = SentenceBert(config)
    ids, _ = _random_batch(np.random.default_rng(0), 4, 12)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    params = model.init(jax.random.key(0), ids, mask)["params"]
    together = model.apply({"params": params}, ids, mask, method=SentenceBert.encode)
    alone = model.apply({"params": params}, ids[1:2, :5], mask[1:2, :5], method=SentenceBert.encode)
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)


def test_accuracy_counts_match_argmax_and_count_ties_as_wrong():
    from jaxbert.losses import accuracy_counts

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5, 300)).astype(np.float32)
    labels = rng.integers(0, 300, (6, 5))
    labels[:, 0] = logits[:, 0].argmax(-1)  # some certainly right
    weights = (rng.random((6, 5)) > 0.3).astype(np.float32)
    correct, count = accuracy_counts(jnp.asarray(logits), jnp.asarray(labels), weights)
    expected = ((logits.argmax(-1) == labels) * weights).sum()
    assert float(correct) == expected and float(count) == weights.sum() and expected > 0
    tied = jnp.zeros((2, 3))  # every class ties: argmax would call label 0 right
    assert float(accuracy_counts(tied, jnp.array([0, 1]), jnp.ones(2))[0]) == 0.0


def test_cross_entropy_matches_optax_in_value_and_gradient():
    import optax

    from jaxbert.losses import softmax_cross_entropy

    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(scale=30.0, size=(4, 7, 301)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 301, (4, 7)))
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(softmax_cross_entropy(logits, labels), expected, rtol=1e-5)

    def total(fn):
        return jax.grad(lambda z: fn(z, labels).sum())(logits)

    np.testing.assert_allclose(
        total(softmax_cross_entropy),
        total(optax.softmax_cross_entropy_with_integer_labels),
        atol=1e-6,
    )
    half = softmax_cross_entropy(logits.astype(jnp.bfloat16), labels)
    assert half.dtype == jnp.float32
