"""Hugging Face / sentence-transformers interop: import and export BERT checkpoints.

`load_pretrained` reads a Hugging Face BERT folder (config.json + model.safetensors) or a
sentence-transformers folder (modules.json, 1_Pooling/config.json, sentence_bert_config.json)
into jaxbert's parameter tree; `export_pretrained` writes a folder that
`transformers.BertModel.from_pretrained` and `sentence_transformers.SentenceTransformer` load.
Weights travel only as safetensors: pickled PyTorch checkpoints are never read.

Names map one to one, because jaxbert keeps the Hugging Face Flax layout: flax
`bert/encoder/layer/0/attention/self/query/kernel` [in, out] is PyTorch
`encoder.layer.0.attention.self.query.weight` [out, in] (transposed); `embedding` and LayerNorm
`scale` become `weight`; `cls/...` keeps its name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import warnings
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from flax import traverse_util

from jaxbert.model import BertConfig, BertForPreTraining, BertModel
from jaxbert.sbert import POOLINGS

if TYPE_CHECKING:
    from jaxbert.data.tokenizer import BertTokenizer

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
UNSUPPORTED_WEIGHTS = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")
# Transformers' "gelu" and "gelu_python" are both the exact erf GELU that jaxbert computes.
EXACT_GELU = ("gelu", "gelu_python")
# The MLM decoder is tied to the word embeddings (and its bias to cls.predictions.bias).
TIED_TENSORS = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
# Legacy sentence-transformers Pooling flags -> pooling mode.
LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
ST_MODULES = "sentence_transformers.models"
# Module classes jaxbert runs ("BERT" is the pre-2.0 name of "Transformer").
ST_KINDS = ("Transformer", "BERT", "Pooling", "Normalize")


@dataclasses.dataclass(frozen=True)
class PretrainedBert:
    """An imported checkpoint: everything needed to run `SentenceBert.encode` or pretraining."""

    config: BertConfig
    params: dict  # {"bert": encoder params}, plus {"cls": ...} when the checkpoint has them
    tokenizer: BertTokenizer
    pooling: str  # "mean" | "cls" | "max"
    normalize: bool  # L2-normalise the pooled embedding
    max_seq_length: int  # truncate token sequences (with [CLS]/[SEP]) to this length


def _read_json(path: pathlib.Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_json_if_present(path: pathlib.Path) -> dict:
    return _read_json(path) if path.exists() else {}


def _write_json(path: pathlib.Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# config.json


def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    """A Hugging Face config.json dict -> BertConfig; what jaxbert cannot run is a ValueError."""
    model_type = hf.get("model_type")
    architectures = hf.get("architectures") or []
    if model_type != "bert" or any(not a.startswith("Bert") for a in architectures):
        raise ValueError(
            f"not a BERT checkpoint: model_type={model_type!r}, architectures={architectures}; "
            "jaxbert imports only model_type 'bert' with Bert* architectures"
        )
    if hf.get("hidden_act", "gelu") not in EXACT_GELU:
        raise ValueError(
            f"hidden_act {hf['hidden_act']!r} is not supported: jaxbert computes the exact (erf) "
            "GELU, hidden_act 'gelu'"
        )
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"position_embedding_type {hf['position_embedding_type']!r} is not supported: "
            "jaxbert has absolute position embeddings only"
        )
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ValueError("decoder BERT (is_decoder / add_cross_attention) is not supported")
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if k not in hf]
    if missing:
        raise ValueError(f"config.json lacks {missing}")
    return BertConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        intermediate_size=hf.get("intermediate_size", 4 * hf["hidden_size"]),
        max_position_embeddings=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02),
    )


def config_to_hf(config: BertConfig, pad_token_id: int, with_heads: bool = False) -> dict[str, Any]:
    """BertConfig -> a Hugging Face config.json dict (BertForPreTraining when it has the heads)."""
    return {
        "architectures": ["BertForPreTraining" if with_heads else "BertModel"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": "gelu",
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "initializer_range": config.initializer_range,
        "position_embedding_type": "absolute",
        "pad_token_id": pad_token_id,
        "tie_word_embeddings": True,
    }


# ---------------------------------------------------------------------------------------------
# Parameter names and shapes


def expected_shapes(config: BertConfig, with_heads: bool) -> dict:
    """The jaxbert parameter tree of ShapeDtypeStructs: {"bert": ...} (+ "cls"), no memory used."""
    ids = jnp.zeros((1, 1), jnp.int32)
    if with_heads:
        model, args = BertForPreTraining(config), (ids, ids, ids, ids)
    else:
        model, args = BertModel(config), (ids,)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))["params"]
    return dict(shapes) if with_heads else {"bert": shapes}


def torch_name(path: tuple[str, ...]) -> str:
    """A flax path ('bert', 'encoder', 'layer', '0', ..., 'kernel') -> the PyTorch name."""
    *modules, leaf = path
    if modules[0] == "bert":
        modules = modules[1:]
    leaf = {"kernel": "weight", "embedding": "weight", "scale": "weight"}.get(leaf, leaf)
    return ".".join([*modules, leaf])


def _candidate_names(path: tuple[str, ...]) -> list[str]:
    """Names a tensor may have: with or without `bert.`, LayerNorm weight/bias or gamma/beta."""
    name = torch_name(path)
    names = [name]
    if path[-2] == "LayerNorm":
        names.append(name.rsplit(".", 1)[0] + (".gamma" if path[-1] == "scale" else ".beta"))
    if path[0] == "bert":
        names += ["bert." + n for n in names]
    return names


def _is_ignored(name: str) -> bool:
    return name.endswith("position_ids") or name.removeprefix("bert.") in TIED_TENSORS


def params_from_torch(tensors: dict[str, np.ndarray], config: BertConfig) -> dict:
    """PyTorch-named tensors -> jaxbert params {"bert": ...} (+ {"cls": ...} if present).

    Every shape is checked against the model's `jax.eval_shape`; missing tensors or wrong shapes
    raise a ValueError that lists them all; unused tensors are listed in a warning.
    """
    with_heads = any(n.startswith("cls.") and not _is_ignored(n) for n in tensors)
    shapes = traverse_util.flatten_dict(expected_shapes(config, with_heads))
    flat, used, missing, wrong_shape = {}, set(), [], []
    for path, shape in shapes.items():
        candidates = _candidate_names(path)
        found = next((n for n in candidates if n in tensors), None)
        if found is None:
            missing.append(candidates[0])
            continue
        used.add(found)
        array = np.asarray(tensors[found], dtype=np.float32)
        if path[-1] == "kernel":
            array = array.T
        if array.shape != shape.shape:
            wrong_shape.append(f"{found}: {array.shape} != expected {shape.shape}")
            continue
        flat[path] = array
    problems = [f"missing tensors {missing}"] if missing else []
    if wrong_shape:
        problems.append(f"wrong shapes (dense kernels transposed to [in, out]) {wrong_shape}")
    if problems:
        raise ValueError("checkpoint does not match its config.json: " + "; ".join(problems))
    decoder = tensors.get("cls.predictions.decoder.weight")
    word_embeddings = flat[("bert", "embeddings", "word_embeddings", "embedding")]
    if decoder is not None and not np.array_equal(decoder, word_embeddings):
        raise ValueError(
            "cls.predictions.decoder.weight differs from the word embeddings: jaxbert ties the "
            "MLM decoder to the embeddings and cannot import an untied one"
        )
    unused = sorted(n for n in tensors if n not in used and not _is_ignored(n))
    if unused:
        warnings.warn(f"unused tensors in the checkpoint: {unused}", stacklevel=3)
    return traverse_util.unflatten_dict({p: jnp.asarray(a) for p, a in flat.items()})


def unfactorized(config: BertConfig, params: dict) -> tuple[BertConfig, dict]:
    """A factorised embedding (`BertConfig.embedding_size`) multiplied out into the plain
    [vocab, hidden] table Hugging Face's BERT has: the same model, more parameters on disk."""
    if not config.embedding_size:
        return config, params
    embeddings = dict(params["bert"]["embeddings"])
    table = np.asarray(embeddings["word_embeddings"]["embedding"], np.float32)
    projection = np.asarray(embeddings.pop("word_embeddings_projection"), np.float32)
    embeddings["word_embeddings"] = {"embedding": table @ projection}
    bert = dict(params["bert"], embeddings=embeddings)
    return dataclasses.replace(config, embedding_size=0), dict(params, bert=bert)


def params_to_torch(params: dict, config: BertConfig) -> dict[str, np.ndarray]:
    """jaxbert params ({"bert"} + optional {"cls"}) -> float32 PyTorch-named, BertModel-style.

    Other subtrees (the SentenceBert NLI `classifier`) have no Hugging Face counterpart and are
    left out. Shapes are checked against `config`.
    """
    if "bert" not in params:
        raise ValueError(f"params need a 'bert' subtree, got keys {sorted(params)}")
    left_out = sorted(set(params) - {"bert", "cls"})
    if left_out:
        logger.info("not exported (no Hugging Face counterpart): %s", left_out)
    subtrees = {k: params[k] for k in ("bert", "cls") if k in params}
    flat = traverse_util.flatten_dict(subtrees)
    shapes = traverse_util.flatten_dict(expected_shapes(config, with_heads="cls" in params))
    missing = sorted("/".join(p) for p in shapes.keys() - flat.keys())
    unknown = sorted("/".join(p) for p in flat.keys() - shapes.keys())
    wrong_shape = [
        f"{'/'.join(p)}: {np.shape(flat[p])} != {shapes[p].shape}"
        for p in flat.keys() & shapes.keys()
        if np.shape(flat[p]) != shapes[p].shape
    ]
    problems = [
        f"{what} {names}"
        for what, names in (("missing", missing), ("unknown", unknown), ("shapes", wrong_shape))
        if names
    ]
    if problems:
        raise ValueError("params do not match the config: " + "; ".join(problems))
    tensors = {}
    for path, value in flat.items():
        array = np.asarray(value, dtype=np.float32)
        tensors[torch_name(path)] = np.ascontiguousarray(array.T if path[-1] == "kernel" else array)
    return tensors


# ---------------------------------------------------------------------------------------------
# Files


def _load_tensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
    if (directory / WEIGHTS_FILE).exists():
        return safetensors.numpy.load_file(directory / WEIGHTS_FILE)
    if (directory / WEIGHTS_INDEX_FILE).exists():
        shards = sorted(set(_read_json(directory / WEIGHTS_INDEX_FILE)["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(safetensors.numpy.load_file(directory / shard))
        return tensors
    others = [name for name in UNSUPPORTED_WEIGHTS if (directory / name).exists()]
    raise ValueError(
        f"no {WEIGHTS_FILE} in {directory}"
        + (f" (found {others})" if others else "")
        + ": only safetensors weights are supported; pickled checkpoints are never loaded. "
        "Convert with transformers: BertModel.from_pretrained(dir)"
        ".save_pretrained(out, safe_serialization=True)"
    )


def _normalizer_lowercases(normalizer: dict | None) -> bool:
    if not normalizer:
        return False
    if normalizer.get("type") == "Sequence":
        return any(_normalizer_lowercases(n) for n in normalizer.get("normalizers", []))
    return normalizer.get("type") == "Lowercase" or bool(normalizer.get("lowercase"))


def _load_tokenizer(directory: pathlib.Path, settings: dict) -> tuple[BertTokenizer, bool]:
    """tokenizer.json if present, else vocab.txt with tokenizer_config.json's do_lower_case.

    Returns the tokenizer and whether it lowercases.
    """
    import tokenizers

    from jaxbert.data.tokenizer import BertTokenizer

    if (directory / "tokenizer.json").exists():
        raw = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        # Hub files often fix padding and truncation (all-MiniLM-L6-v2's pad and cut at 128, below
        # its max_seq_length of 256); sentence-transformers overrides them per call, and so do we.
        raw.no_padding()
        raw.no_truncation()
        lowercases = _normalizer_lowercases(json.loads(raw.to_str()).get("normalizer"))
        return BertTokenizer(raw), lowercases
    if (directory / "vocab.txt").exists():
        lowercase = settings.get("do_lower_case", True)  # transformers' BertTokenizer default
        return BertTokenizer.from_vocab(
            str(directory / "vocab.txt"), lowercase=lowercase
        ), lowercase
    raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {directory}")


def _pooling_mode(settings: dict) -> str:
    if "pooling_mode" in settings:  # sentence-transformers >= 6
        modes = settings["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        modes = [mode for flag, mode in LEGACY_POOLING_FLAGS.items() if settings.get(flag)]
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise ValueError(f"pooling {modes} is not supported; jaxbert pools with one of {POOLINGS}")
    return modes[0]


def _check_vocab(tokenizer: BertTokenizer, config: BertConfig) -> None:
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size} embedding rows"
        )


def _module_kind(module: dict) -> str:
    """'sentence_transformers.models.Pooling' (or ...modules.pooling.Pooling) -> 'Pooling'."""
    return module["type"].rsplit(".", 1)[-1]


def load_pretrained(directory: str | pathlib.Path) -> PretrainedBert:
    """Loads a Hugging Face BERT or sentence-transformers folder (safetensors weights only)."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    transformer_dir, pooling, normalize = root, "mean", False
    if (root / "modules.json").exists():
        modules = _read_json(root / "modules.json")
        unsupported = [m["type"] for m in modules if _module_kind(m) not in ST_KINDS]
        if unsupported:
            raise ValueError(
                f"sentence-transformers modules {unsupported} are not supported; jaxbert runs "
                f"Transformer, Pooling and Normalize"
            )
        for module in modules:
            kind = _module_kind(module)
            if kind in ("Transformer", "BERT"):
                transformer_dir = root / module["path"]
            elif kind == "Pooling":
                pooling = _pooling_mode(_read_json(root / module["path"] / "config.json"))
            elif kind == "Normalize":
                normalize = True
    if not (transformer_dir / "config.json").exists():
        raise FileNotFoundError(f"no config.json in {transformer_dir}")
    config = config_from_hf(_read_json(transformer_dir / "config.json"))
    params = params_from_torch(_load_tensors(transformer_dir), config)
    tokenizer_settings = _read_json_if_present(transformer_dir / "tokenizer_config.json")
    tokenizer, lowercases = _load_tokenizer(transformer_dir, tokenizer_settings)
    _check_vocab(tokenizer, config)
    sbert_settings = _read_json_if_present(transformer_dir / "sentence_bert_config.json")
    if sbert_settings.get("do_lower_case") and not lowercases:
        raise ValueError(
            "sentence_bert_config.json lowercases the text before a cased tokenizer; "
            "jaxbert does not support this"
        )
    # sentence-transformers' rule: its own max_seq_length (up to v5), else the tokenizer's
    # model_max_length (what v6 saves), capped at the position table.
    max_seq_length = int(
        min(
            sbert_settings.get("max_seq_length")
            or tokenizer_settings.get("model_max_length")
            or config.max_position_embeddings,
            config.max_position_embeddings,
        )
    )
    return PretrainedBert(config, params, tokenizer, pooling, normalize, max_seq_length)


def export_pretrained(
    directory: str | pathlib.Path,
    *,
    config: BertConfig,
    params: dict,
    tokenizer: BertTokenizer,
    pooling: str = "mean",
    normalize: bool = False,
    max_seq_length: int = 128,
) -> None:
    """Writes a Hugging Face BertModel + sentence-transformers folder.

    params: {"bert": ...}, optionally {"cls": ...}. Tensors are named as in `BertModel`
    (no `bert.` prefix); the heads become `cls.*` tensors, which `BertForPreTraining` loads and
    `BertModel` / sentence-transformers skip. Other subtrees, such as the NLI `classifier`, have
    no Hugging Face counterpart and are left out.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if not 0 < max_seq_length <= config.max_position_embeddings:
        raise ValueError(
            f"max_seq_length {max_seq_length} must be in [1, {config.max_position_embeddings}]"
        )
    _check_vocab(tokenizer, config)
    config, params = unfactorized(config, params)
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = params_to_torch(params, config)
    safetensors.numpy.save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    _write_json(out / "config.json", config_to_hf(config, tokenizer.pad_id, "cls" in params))

    tokenizer.save(str(out))  # tokenizer.json + vocab.txt
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")
    special = {
        f"{role}_token": vocab[getattr(tokenizer, f"{role}_id")]
        for role in ("unk", "sep", "pad", "cls", "mask")
    }
    lowercase = _normalizer_lowercases(_read_json(out / "tokenizer.json").get("normalizer"))
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": lowercase,
            "do_basic_tokenize": True,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "model_max_length": max_seq_length,
            **special,
        },
    )
    _write_json(out / "special_tokens_map.json", special)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": f"{ST_MODULES}.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": f"{ST_MODULES}.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": f"{ST_MODULES}.Normalize"}
        )
        (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out / "modules.json", modules)
    pooling_flags = {flag: mode == pooling for flag, mode in LEGACY_POOLING_FLAGS.items()}
    _write_json(
        out / "1_Pooling" / "config.json",
        {"word_embedding_dimension": config.hidden_size, **pooling_flags, "include_prompt": True},
    )
    _write_json(
        out / "sentence_bert_config.json",
        {"max_seq_length": max_seq_length, "do_lower_case": False},
    )
    _write_json(
        out / "config_sentence_transformers.json",
        {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
