"""SentenceModel invariances and errors; evaluator numbers against scipy / scikit-learn."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from jaxbert import evaluate
from jaxbert.data import nli
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig
from jaxbert.sbert import SentenceBert
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
    tokenizer = BertTokenizer.train(SENTENCES * 20, vocab_size=200)
    config = BertConfig.from_size(
        "tiny",
        vocab_size=256,
        max_position_embeddings=64,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    module = SentenceBert(config, num_labels=3)
    ids = jnp.zeros((1, 8), jnp.int32)
    params = module.init(jax.random.key(0), ids, jnp.ones_like(ids))["params"]
    return SentenceModel(
        model_config=config,
        params=params,
        tokenizer=tokenizer,
        label_names=("entailment", "neutral", "contradiction"),
        max_len=16,
        has_classifier=True,
    )


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
