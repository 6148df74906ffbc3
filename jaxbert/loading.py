"""Reading a sentence model from disk, for `jaxbert.serve.SentenceModel`.

Each function returns the keyword arguments of `SentenceModel(...)`: the model config, params,
tokenizer, pooling, label names and head layout, all rebuilt from what the directory holds.

    run directory (a fine-tuning or pretraining run)   -> from_run_dir
    Hugging Face BERT / sentence-transformers folder   -> from_hf_folder (safetensors only;
                                                          `is_hf_folder` tells them apart)
"""

from __future__ import annotations

import os

from jaxbert import checkpoint

DEFAULT_FEATURES = ("u", "v", "|u-v|")


def from_run_dir(path: str, which: str = "best") -> dict:
    """A run directory's checkpoint (`which`: "best" or "latest"); a pretraining run gives its
    encoder with mean pooling and no NLI head."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory {path!r} does not exist")
    params, meta, step = checkpoint.load_params(path, which=which)
    model_config, tokenizer = checkpoint.model_and_tokenizer(meta)
    if meta.get("kind") == "pretraining":
        params = {"bert": params["bert"]}
        meta = dict(meta, pooling="mean", normalize=False, label_names=[])
    return dict(
        model_config=model_config,
        params=params,
        tokenizer=tokenizer,
        pooling=meta.get("pooling", "mean"),
        normalize=meta.get("normalize", False),
        label_names=meta.get("label_names", ()),
        features=tuple(meta.get("features", DEFAULT_FEATURES)),
        max_len=meta.get("max_len", 128),
        has_classifier=meta.get("has_classifier", False),
        source=f"{path} (step {step})",
        projection_dim=meta.get("projection_dim", 0),
        head_hidden=meta.get("head_hidden", 0),
    )


def from_hf_folder(path: str) -> dict:
    """A Hugging Face BERT or sentence-transformers folder (safetensors): the encoder with the
    folder's pooling and normalisation, no NLI head."""
    from jaxbert import hf

    loaded = hf.load_pretrained(path)
    return dict(
        model_config=loaded.config,
        params={"bert": loaded.params["bert"]},
        tokenizer=loaded.tokenizer,
        pooling=loaded.pooling,
        normalize=loaded.normalize,
        max_len=loaded.max_seq_length,
        has_classifier=False,
        source=path,
    )


def is_hf_folder(path: str) -> bool:
    """Whether `path` holds a Hugging Face model (config.json + model.safetensors)."""
    return all(os.path.exists(os.path.join(path, f)) for f in ("config.json", "model.safetensors"))
