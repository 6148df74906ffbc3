"""SentenceModel invariances and errors; evaluator numbers against scipy / scikit-learn."""

import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import tiny_sentence_model
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from jaxbert import evaluate
from jaxbert.data import nli
from jaxbert.serve import EmptyTextError, SentenceModel

SENTENCES = [
    "A man plays a guitar.",
    "Two dogs run through the snowy field while their owner watches from far away.",
    "Music!",
    "The chef cooks dinner for the guests in a small restaurant near the river.",
    "a woman reads",
]


@pytest.fixture(scope="module")
def model():
    return tiny_sentence_model(SENTENCES, tokenizer_vocab=200, model_vocab=256, max_len=16)


def test_encode_shapes(model):
    assert model.encode(SENTENCES[0]).shape == (128,)
    assert model.encode(SENTENCES).shape == (5, 128)
    assert model.encode([]).shape == (0, 128)


def test_embedding_does_not_depend_on_batch_neighbours_or_order(model):
    together = model.encode(SENTENCES, batch_size=64)
    one_by_one = np.stack([model.encode(s) for s in SENTENCES])
    reordered = model.encode(SENTENCES[::-1], batch_size=2)[::-1]
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(together, reordered, atol=1e-5)


def test_embedding_does_not_depend_on_padding_length(model):
    ids, _ = model.tokenize([SENTENCES[2]])
    n = len(ids[0])
    embeddings = []
    for length in (n, 16, 64):
        input_ids = np.zeros((1, length), np.int32)
        mask = np.zeros((1, length), np.int32)
        input_ids[0, :n], mask[0, :n] = ids[0], 1
        embeddings.append(np.asarray(model._encode_fn(model.params, input_ids, mask)))
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-5)
    np.testing.assert_allclose(embeddings[0], embeddings[2], atol=1e-5)


def test_classify_is_a_distribution_and_does_not_mix_the_towers(model):
    single = model.classify(SENTENCES[0], SENTENCES[1])
    assert list(single) == ["entailment", "neutral", "contradiction"]
    assert sum(single.values()) == pytest.approx(1.0, abs=1e-5)
    batch = model.classify([SENTENCES[0], SENTENCES[2]], [SENTENCES[1], SENTENCES[3]])
    assert batch[0] == pytest.approx(single, abs=1e-5)
    # Each sentence is encoded on its own: the premise's embedding ignores the hypothesis.
    u1 = model.encode(SENTENCES[0])
    assert np.allclose(u1, model.encode([SENTENCES[0], SENTENCES[4]])[0], atol=1e-5)


def test_a_string_paired_with_a_list_is_an_error_not_pairs_of_characters(model):
    with pytest.raises(TypeError, match="two strings .one pair. or two lists of strings"):
        model.classify("ab", [SENTENCES[0], SENTENCES[1]])
    with pytest.raises(TypeError, match="not a string and a list"):
        model.similarity([SENTENCES[0], SENTENCES[1]], "ab")
    with pytest.raises(TypeError, match="use classify"):
        model.predict_proba("ab", "cd")


def test_similarity(model):
    assert model.similarity(SENTENCES[0], SENTENCES[0]) == pytest.approx(1.0, abs=1e-5)
    scores = model.similarity(SENTENCES[:2], SENTENCES[2:4])
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1 + 1e-6)
    with pytest.raises(ValueError, match="first and"):
        model.similarity(SENTENCES[:2], SENTENCES[:3])


def test_empty_and_overlong_input(model, caplog):
    with pytest.raises(EmptyTextError, match="text 1 is empty"):
        model.encode(["fine", "   "])
    with pytest.raises(TypeError, match="not str"):
        model.encode([None])
    long_text = " ".join(["guitar"] * 100)
    with caplog.at_level(logging.WARNING):
        ids, truncated = model.tokenize([long_text, "short"])
    assert truncated.tolist() == [True, False]
    assert len(ids[0]) == model.max_len and ids[0][-1] == model.tokenizer.sep_id
    assert "truncated" in caplog.text
    assert model.encode(long_text).shape == (128,)


def test_spearman_and_pearson_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    y[:40] = np.round(y[:40])  # ties
    x[50:90] = 1.0
    assert evaluate.spearman(x, y) == pytest.approx(
        scipy.stats.spearmanr(x, y).statistic, abs=1e-12
    )
    assert evaluate.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-12)
    np.testing.assert_allclose(evaluate.rankdata(x), scipy.stats.rankdata(x))


def test_nli_report_matches_scikit_learn():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 500)
    predicted = np.where(rng.random(500) < 0.6, gold, rng.integers(0, 3, 500))
    report = evaluate.nli_report(gold, predicted, ("entailment", "neutral", "contradiction"))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted)
    for i, name in enumerate(("entailment", "neutral", "contradiction")):
        assert report["per_class"][name]["precision"] == pytest.approx(precision[i])
        assert report["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert report["per_class"][name]["f1"] == pytest.approx(f1[i])
        assert report["per_class"][name]["support"] == support[i]
    assert report["confusion"] == confusion_matrix(gold, predicted).tolist()
    assert report["accuracy"] == pytest.approx(np.mean(gold == predicted))
    assert "accuracy" in evaluate.format_report(report)


def test_evaluate_nli_rejects_labels_the_model_does_not_know(model):
    from jaxbert.data.nli import PairDataset

    dataset = PairDataset(
        sentence1=["a"],
        sentence2=["b"],
        labels=np.array([0]),
        label_names=("yes",),
        name="odd",
        stats={},
    )
    with pytest.raises(ValueError, match="labels \\['yes'\\] that the model does not know"):
        evaluate.evaluate_nli(model, dataset)


def test_model_without_classifier_refuses_to_classify(model):
    bare = SentenceModel(
        model_config=model.model_config,
        params={"bert": model.params["bert"]},
        tokenizer=model.tokenizer,
    )
    with pytest.raises(ValueError, match="no trained NLI classifier"):
        bare.classify("a", "b")
    dataset = nli.PairDataset(
        sentence1=["a"], sentence2=["b"], labels=np.array([0]), label_names=nli.NLI_LABELS,
        name="dev", stats={},
    )  # fmt: skip
    with pytest.raises(ValueError, match="has no trained NLI classifier .* evaluate it on stsb"):
        evaluate.evaluate_nli(bare, dataset)
    np.testing.assert_allclose(bare.encode("a man"), model.encode("a man"), atol=1e-6)


def test_missing_model_directory():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentenceModel.from_dir("/nonexistent/run")


# ---------------------------------------------------------------------- serving fast path


def _reference_embeddings(model, texts):
    """Each text alone, unpadded, through the jitted flax encoder (the path `encode` took
    before its compiled executables and length buckets): what `encode` must give."""
    ids, _ = model.tokenize(texts)
    rows = []
    for x in ids:
        input_ids = np.asarray(x, np.int32)[None]
        rows.append(np.asarray(model._encode_fn(model.params, input_ids, np.ones_like(input_ids))))
    return np.concatenate(rows)


def test_fast_path_equals_the_flax_encoder(model):
    reference = _reference_embeddings(model, SENTENCES)
    singles = np.stack([model.encode(s) for s in SENTENCES])
    np.testing.assert_allclose(singles, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(model.encode(SENTENCES, batch_size=2), reference, atol=1e-5, rtol=0)
    # A batch big enough for the fine buckets, in an order the length sort must undo.
    order = np.random.default_rng(0).permutation(4 * len(SENTENCES))
    many = [SENTENCES[i % len(SENTENCES)] for i in order]
    expected = reference[order % len(SENTENCES)]
    np.testing.assert_allclose(model.encode(many, batch_size=16), expected, atol=1e-5, rtol=0)


def _encoder_calls(monkeypatch) -> list[tuple]:
    """(kind, rows, length) of every compiled encoder looked up from now on: kind "packed"
    for rows that pack several texts, "rows" for one text a row."""
    from jaxbert import serve

    calls, executable = [], serve._executable

    def spy(encode_fn, key, params, rows, length):
        calls.append(("packed" if "packed" in key[-3:] else "rows", rows, length))
        return executable(encode_fn, key, params, rows, length)

    monkeypatch.setattr(serve, "_executable", spy)
    return calls


@pytest.mark.parametrize("options", [{}, dict(pooling="cls"), dict(pooling="max")])
def test_a_pair_is_one_row_and_each_text_is_encoded_as_if_alone(model, monkeypatch, options):
    from jaxbert import app_support

    model = _rebuilt(model, label_names=model.label_names, **options)
    ids, _ = model.tokenize(SENTENCES)
    assert [len(ids[i]) for i in (2, 4, 0)] == [4, 5, 8]
    music, woman, guitar = SENTENCES[2], SENTENCES[4], SENTENCES[0]
    reference = _reference_embeddings(model, [music, woman])
    calls = _encoder_calls(monkeypatch)
    u, v = model.pair_embeddings([music], [woman])
    assert calls == [("packed", 1, 10)]  # 4 + 5 tokens in one row, fine length bucket 10
    np.testing.assert_allclose(np.concatenate([u, v]), reference, atol=1e-5, rtol=0)
    # The app's answer: the same one call feeds the classifier and the cosine.
    calls.clear()
    answer = app_support.predict_pair(model, music, woman)
    assert calls == [("packed", 1, 10)]
    assert answer["probabilities"] == pytest.approx(model.classify(music, woman), abs=1e-6)
    assert answer["similarity"] == pytest.approx(model.similarity(music, woman), abs=1e-6)
    # 8 + 16 tokens do not fit in max_len (16) together: a batch of two rows.
    calls.clear()
    u, v = model.pair_embeddings([guitar], [SENTENCES[1]])
    assert calls == [("rows", 2, 16)]
    reference = _reference_embeddings(model, [guitar, SENTENCES[1]])
    np.testing.assert_allclose(np.concatenate([u, v]), reference, atol=1e-5, rtol=0)
    calls.clear()
    model.encode([music, woman], batch_size=1)  # the caller's batch size still holds
    assert sorted(calls) == [("rows", 1, 8), ("rows", 1, 8)]
    with pytest.raises(ValueError, match="got 1 first and 2 second texts"):
        model.pair_embeddings([music], [woman, music])


def test_fast_path_reuses_one_executable_per_shape(model):
    from jaxbert import serve

    model.encode(SENTENCES[0])
    count = len(serve._EXECUTABLES)
    model.encode(SENTENCES[0])
    # a second model of the same definition: the same executables
    twin = _rebuilt(model, label_names=model.label_names)
    twin.encode(SENTENCES[0])
    assert len(serve._EXECUTABLES) == count


def test_quantized_kernels_round_trip():
    from jaxbert import quantize

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(64, 32)).astype(np.float32) * rng.uniform(0.01, 2, size=32)
    kernel[:, 5] = 0.0
    q, scale = quantize.quantize_kernel(kernel)
    assert q.dtype == np.int8 and scale.shape == (32,) and np.abs(q).max() == 127
    restored = quantize.dequantize_kernel(q, scale)
    # Round to nearest: every weight within half a step of its channel's scale.
    assert np.all(np.abs(restored - kernel) <= scale / 2 + 1e-7)
    assert np.all(restored[:, 5] == 0.0)
    np.testing.assert_array_equal(quantize.quantize_kernel(restored)[0], q)


def test_quantize_params_touches_only_the_encoders_dense_layers(model):
    from jaxbert import quantize

    qparams = quantize.quantize_params(model.params, "int8")
    flat = {"/".join(str(k.key) for k in path): x for path, x in jax.tree.leaves_with_path(qparams)}
    int8 = {name for name, x in flat.items() if x.dtype == np.int8}
    layers = model.model_config.num_layers
    assert len(int8) == 6 * layers and all(n.startswith("bert/encoder/") for n in int8)
    assert all(name.replace("/kernel", "/kernel_scale") in flat for name in int8)
    for name in int8:  # 128 x each column's sum, what uint8 activations' +128 adds
        offset = flat[name.replace("/kernel", "/kernel_offset")]
        assert offset.dtype == np.int32
        np.testing.assert_array_equal(offset, 128 * flat[name].astype(np.int64).sum(0))
    assert flat["bert/embeddings/word_embeddings/embedding"].dtype == np.float32
    assert flat["classifier/kernel"].dtype == np.float32
    bf16 = quantize.quantize_params(model.params, "bfloat16")
    assert bf16["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"].dtype == (
        jnp.bfloat16
    )
    with pytest.raises(ValueError, match="quantize must be one of"):
        quantize.quantize_params(model.params, "int4")


@pytest.mark.parametrize("mode, bound", [("int8", 0.03), ("bfloat16", 0.01)])
def test_a_quantized_dense_layer_stays_close_to_float32(mode, bound):
    """One flax Dense through the interceptor, against float32, per output column. Rounding x
    and W to 8 bits (steps of max/127 per token / per output channel, max ~2.5 sigma) leaves
    ~0.6 % rms error on each, ~0.8 % on their products' sum; the worst of 32 columns over only
    16 tokens is up to ~2x that. bfloat16 (8-bit mantissa): ~0.3 %. One scale for the whole
    kernel, wrong for these columns of sizes 0.01 to 2, is off by tens of percent."""
    from flax import linen as nn

    from jaxbert import quantize

    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 64)).astype(np.float32) * rng.uniform(0.1, 3, size=(16, 1))
    kernel = rng.normal(size=(64, 32)).astype(np.float32) * rng.uniform(0.01, 2, size=32)
    bias = rng.normal(size=32).astype(np.float32)
    dense = nn.Dense(32)
    params = {"encoder": {"kernel": kernel, "bias": bias}}
    qparams = quantize.quantize_params(params, mode)["encoder"]
    with quantize.dense_interceptor():
        y = dense.apply({"params": qparams}, x)
    exact = x @ kernel
    error = np.linalg.norm(np.asarray(y) - bias - exact, axis=0) / np.linalg.norm(exact, axis=0)
    assert error.max() < bound
    if mode == "int8":
        per_tensor = dict(qparams, kernel_scale=np.full(32, qparams["kernel_scale"].mean()))
        with quantize.dense_interceptor():
            wrong = dense.apply({"params": per_tensor}, x)
        assert np.linalg.norm(np.asarray(wrong) - bias - exact) > 10 * bound * np.linalg.norm(exact)


def test_uint8_activations_give_the_int8_sums_exactly():
    """The mixed uint8 x int8 dot sums exactly what numpy does in int64, extremes included
    (255 x -128 over every row), for activations with leading batch dimensions; shifted by
    +128 and taken back by the kernel's offset, a dense layer's result is the int8 one to the
    last bit, so the CPU-dependent choice between them cannot change an embedding."""
    from jaxbert import quantize

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(2, 5, 96)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(96, 24)).astype(np.int8)
    x[0, 0], w[:, 0] = 255, -128
    y = np.asarray(quantize.uint8_int8_dot(x, w))
    assert y.dtype == np.int32 and y.shape == (2, 5, 24)
    np.testing.assert_array_equal(y, x.astype(np.int64) @ w.astype(np.int64))
    with pytest.raises(TypeError, match="uint8"):
        quantize.uint8_int8_dot(x.astype(np.int8), w)

    kernel, scale = quantize.quantize_kernel(rng.normal(size=(96, 24)).astype(np.float32))
    offset = quantize.kernel_offset(kernel)
    h = rng.normal(size=(3, 7, 96)).astype(np.float32) * rng.uniform(0.1, 3, size=(3, 7, 1))
    signed = quantize.quantized_dense(h, kernel, scale, None, offset, activations="int8")
    unsigned = quantize.quantized_dense(h, kernel, scale, None, offset, activations="uint8")
    np.testing.assert_array_equal(np.asarray(unsigned), np.asarray(signed))
    # Without the offset the +128 would stay in every output: a clear error, not a wrong sum.
    with pytest.raises(ValueError, match="offset"):
        quantize.quantized_dense(h, kernel, scale, None, None, activations="uint8")
    with pytest.raises(ValueError, match="activations must be one of"):
        quantize.quantized_dense(h, kernel, scale, None, offset, activations="int4")


@pytest.mark.parametrize(
    "machine, flags, expected",
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "uint8"),  # e.g. AMD EPYC (Zen 4)
        ("x86_64", {"avx2", "avx_vnni"}, "uint8"),
        ("x86_64", {"avx512_vnni", "amx_int8", "amx_tile"}, "int8"),  # Xeon with AMX
        ("x86_64", {"avx2", "fma"}, "int8"),  # no VNNI: no unsigned-by-signed kernel
        ("aarch64", {"asimd", "asimddp"}, "int8"),  # ARM's dot instructions are signed
    ],
)
def test_int8_activations_follow_the_cpu(monkeypatch, machine, flags, expected):
    from jaxbert import quantize

    monkeypatch.setattr(quantize.platform, "machine", lambda: machine)
    monkeypatch.setattr(quantize, "_cpu_flags", lambda: set(flags))
    quantize.int8_activations.cache_clear()
    try:
        assert quantize.int8_activations() == expected
    finally:
        quantize.int8_activations.cache_clear()


def _rebuilt(model, params=None, **options):
    """`model`'s definition, tokenizer and length with other params or options."""
    return SentenceModel(
        model_config=model.model_config,
        params=model.params if params is None else params,
        tokenizer=model.tokenizer,
        max_len=model.max_len,
        **options,
    )


@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
def test_quantized_model_stays_close_to_float32(model, mode):
    from jaxbert import quantize

    quantized = _rebuilt(model, label_names=model.label_names, quantize=mode)
    many = SENTENCES * 4
    u, v = model.encode(many), quantized.encode(many, batch_size=16)
    cosine = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    # 8 bits per weight (and per activation): errors of ~1 % of a layer's output, well under
    # what moves a cosine by 0.01 after two layers; a wrong scale or layout gives ~0.
    assert cosine.min() > 0.99
    assert not np.array_equal(u, v)  # the quantised layers did run
    single = quantized.encode(SENTENCES[1])
    np.testing.assert_allclose(single, v[1], atol=1e-5)  # neither its batch nor its padding
    pair = np.concatenate(quantized.pair_embeddings([SENTENCES[2]], [SENTENCES[4]]))  # packed
    np.testing.assert_allclose(pair, v[[2, 4]], atol=1e-5)
    assert quantized.describe()["quantize"] == mode
    # The compiled encoder computes with the quantised kernels, not float copies of them.
    ids = np.ones((1, 8), np.int32)
    for encode_fn in (quantized._encode_fn, quantized._encode_packed_fn):
        text = encode_fn.lower(quantized.encoder_params, ids, ids).as_text()
        assert ("xi8>" if mode == "int8" else "xbf16>") in text
        if mode == "int8" and quantize.int8_activations() == "uint8":
            # this CPU's int8 matmuls take uint8 activations, handed to XLA as they are
            mixed_dot = r"tensor<[0-9x]+xui8>, tensor<[0-9x]+xi8>\) -> tensor<[0-9x]+xi32>"
            assert re.search(mixed_dot, text)
    probabilities = quantized.classify(SENTENCES[0], SENTENCES[1])
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_quantize_is_recorded_in_a_served_folder(model, tmp_path):
    from jaxbert import deploy

    quantized = _rebuilt(model, label_names=model.label_names, has_classifier=True, quantize="int8")
    folder = deploy.save_served(quantized, str(tmp_path / "served"))
    loaded = deploy.load_served(folder)
    assert loaded.quantize == "int8"
    # The folder stores float16 parameters; quantised from those, the same model.
    half = jax.tree.map(lambda x: np.asarray(x, np.float16).astype(np.float32), model.params)
    expected = _rebuilt(model, params=half, quantize="int8")
    np.testing.assert_allclose(loaded.encode(SENTENCES), expected.encode(SENTENCES), atol=1e-6)
    with pytest.raises(ValueError, match="quantize must be one of"):
        SentenceModel(model_config=model.model_config, params=model.params,
                      tokenizer=model.tokenizer, quantize="int4")  # fmt: skip


def _softmax(z):
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _sampled_labels(probs, seed):
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(axis=1)
    return (rng.random((len(probs), 1)) > cumulative).sum(axis=1)


def test_fit_temperature_recovers_the_overconfidence_of_a_classifier():
    logits = np.random.default_rng(0).normal(0, 3, (20000, 3))
    probs = _softmax(logits)
    # Labels drawn from the probabilities at temperature 2: the classifier is overconfident.
    overconfident = _sampled_labels(_softmax(logits / 2), seed=1)
    calibrated = _sampled_labels(probs, seed=2)
    assert evaluate.fit_temperature(probs, overconfident) == pytest.approx(2.0, rel=0.05)
    assert evaluate.fit_temperature(probs, calibrated) == pytest.approx(1.0, rel=0.05)
    assert evaluate.reliability(probs, calibrated)["ece"] < 1.5
    assert evaluate.reliability(probs, overconfident)["ece"] > 10
    tempered = evaluate.temper(probs, 2.0)
    assert evaluate.reliability(tempered, overconfident)["ece"] < 1.5
    np.testing.assert_array_equal(tempered.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(evaluate.temper(probs, 1.0), probs, atol=1e-12)
    with pytest.raises(ValueError, match="labelled pairs"):
        evaluate.fit_temperature(probs[:0], overconfident[:0])


def test_reliability_bins_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.5, 0.4], [0.1, 0.5, 0.4]])
    gold = np.array([0, 1, 1, 1])  # the 0.9 bin is right half the time, the 0.5 bin always
    report = evaluate.reliability(probs, gold, bins=10)
    assert [b["count"] for b in report["bins"]] == [2, 2]
    assert [b["accuracy"] for b in report["bins"]] == [1.0, 0.5]
    assert report["ece"] == pytest.approx(100 * (2 * 0.5 + 2 * 0.4) / 4)


def test_temperature_softens_probabilities_and_keeps_the_label(model):
    pairs = (SENTENCES[:3], SENTENCES[2:5])
    probs = model.predict_proba(*pairs)
    soft = model.with_temperature(3.0)
    assert soft.temperature == 3.0 and model.temperature == 1.0 and soft.params is model.params
    np.testing.assert_allclose(soft.predict_proba(*pairs), evaluate.temper(probs, 3.0), atol=1e-5)
    assert soft.describe()["temperature"] == 3.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            model.with_temperature(bad)


def test_calibration_file_is_read_for_its_own_step_and_a_damaged_one_is_one_clear_error(
    tmp_path,
):
    from jaxbert import loading

    assert loading.read_temperature(str(tmp_path), 10) == 1.0  # no file: untempered
    file = tmp_path / loading.CALIBRATION_FILE
    file.write_text('{"temperature": 1.6, "step": 10}')
    assert loading.read_temperature(str(tmp_path), 10) == 1.6
    assert loading.read_temperature(str(tmp_path), 20) == 1.0  # fitted for another checkpoint
    for damaged in ('{"temperature": 1.6', '{"step": 10}', '{"temperature": -2, "step": 10}'):
        file.write_text(damaged)
        with pytest.raises(ValueError, match="delete it to serve untempered"):
            loading.read_temperature(str(tmp_path), 10)


def test_temperature_is_recorded_in_a_served_folder(model, tmp_path):
    from jaxbert import deploy

    folder = deploy.save_served(model.with_temperature(1.7), str(tmp_path / "served"))
    assert deploy.load_served(folder).temperature == pytest.approx(1.7)
