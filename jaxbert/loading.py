"""Reading a sentence model from disk, for `jaxbert.serve.SentenceModel`.

Each function returns the keyword arguments of `SentenceModel(...)`: the model config, params,
tokenizer, pooling, label names and head layout, all rebuilt from what the directory holds.

    run directory (a fine-tuning or pretraining run)   -> from_run_dir
    Hugging Face BERT / sentence-transformers folder   -> from_hf_folder (safetensors only;
                                                          `is_hf_folder` tells them apart)
"""

from __future__ import annotations

import json
import logging
import math
import os

from jaxbert import checkpoint

log = logging.getLogger(__name__)

DEFAULT_FEATURES = ("u", "v", "|u-v|")
# A fine-tuning run's classifier temperature, fitted after training (`jaxbert.finetune`).
CALIBRATION_FILE = "calibration.json"


def checked_temperature(temperature) -> float:
    """A classifier temperature as a float; anything but a finite positive number is an error."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return float(temperature)


def read_temperature(path: str, step: int) -> float:
    """The temperature `calibration.json` in run directory `path` holds for checkpoint `step`;
    1.0 (untempered) without the file or when it was fitted for another step."""
    file = os.path.join(path, CALIBRATION_FILE)
    if not os.path.exists(file):
        return 1.0
    try:
        with open(file) as f:
            calibration = json.load(f)
        temperature = checked_temperature(float(calibration["temperature"]))
        fitted_step = int(calibration["step"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{file} does not read ({checkpoint.one_line(error)}); delete it to serve untempered "
            "probabilities, or rerun the run's fine-tuning command to fit it again"
        ) from error
    if fitted_step != step:
        log.info(
            "%s: the temperature was fitted for step %d, not %d; unused", file, fitted_step, step
        )
        return 1.0
    return temperature


def from_run_dir(path: str, which: str = "best") -> dict:
    """A run directory's checkpoint (`which`: "best" or "latest"); a pretraining run gives its
    encoder with mean pooling and no NLI head. The classifier's temperature comes from the
    run's calibration.json when it was fitted for that checkpoint."""
    kwargs, step = read_run_dir(path, which)
    if kwargs["has_classifier"]:
        kwargs["temperature"] = read_temperature(path, step)
    return kwargs


def read_run_dir(path: str, which: str = "best") -> tuple[dict, int]:
    """`from_run_dir`'s keyword arguments before calibration (untempered), and the step read."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory {path!r} does not exist")
    params, meta, step = checkpoint.load_params(path, which=which)
    model_config, tokenizer = checkpoint.model_and_tokenizer(meta)
    if meta.get("kind") == "pretraining":
        params = {"bert": params["bert"]}
        meta = dict(meta, pooling="mean", normalize=False, label_names=[])
    kwargs = dict(
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
    return kwargs, step


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
