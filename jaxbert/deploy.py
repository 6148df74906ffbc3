"""A self-contained bundle of the app and one model, for a free CPU host.

    write_bundle("runs/sbert_small", "deploy/sbert_small")   # scripts/export.py --deploy
    cd deploy/sbert_small && pip install -r requirements.txt
    streamlit run app.py -- --model model

The bundle holds: `model/` (the parameters as 16-bit safetensors, `served.json` with the model
config, tokenizer, pooling, labels and the dtype to serve in), `app.py`, the jaxbert package as a
wheel in `wheels/` (it is on no package index), `requirements.txt` (CPU-only, no PyTorch, pinned
to the versions this export ran with), a `Dockerfile` (Hugging Face Spaces' Docker SDK: user
1000, port 7860), `.streamlit/config.toml` and a README with the Space's front matter.

Parameters are stored as float16 (half of float32's bytes; 10 mantissa bits against bfloat16's 7,
so closer to the trained weights) and widened when loaded to `SERVE_DTYPE`: float32, which
measured faster on the 2-core CPU than bfloat16 compute (README, "Judgements and deployment").
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import os
import pathlib
import shutil
import sys
import zipfile

import numpy as np

from jaxbert import feedback
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig
from jaxbert.serve import SentenceModel

SERVED_FILE = "served.json"
PARAMS_FILE = "params.safetensors"
FORMAT = "jaxbert-served"
FORMAT_VERSION = 1
SERVE_DTYPES = ("float32", "bfloat16")
SERVE_DTYPE = "float32"  # measured: see the module docstring
ROOT = pathlib.Path(__file__).resolve().parents[1]
# What the app imports at run time (found by importing app.py's modules and listing the
# distributions they loaded; `requirements` checks the list against what is installed).
RUNTIME_DISTRIBUTIONS = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "absl-py",
    "numpy",
    "scipy",
    "tokenizers",
    "safetensors",
    "ml_dtypes",
    "matplotlib",
    "pandas",
    "streamlit",
)
FORBIDDEN = ("torch", "tensorflow", "jax-cuda12-plugin", "jax-cuda13-plugin", "nvidia-")


def is_served(path: str) -> bool:
    return os.path.isfile(os.path.join(path, SERVED_FILE))


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = np.asarray(value)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def save_served(model: SentenceModel, out_dir: str, serve_dtype: str = SERVE_DTYPE) -> str:
    """Writes the model as a served folder (float16 safetensors + served.json); returns it."""
    from safetensors.numpy import save_file

    if serve_dtype not in SERVE_DTYPES:
        raise ValueError(f"serve_dtype must be one of {SERVE_DTYPES}, got {serve_dtype!r}")
    flat = _flatten(model.params)
    half = {name: value.astype(np.float16) for name, value in flat.items()}
    for name, value in half.items():
        if not np.isfinite(value).all():
            raise ValueError(f"parameter {name} does not fit in float16 (|x| > 65504)")
    os.makedirs(out_dir, exist_ok=True)
    save_file(half, os.path.join(out_dir, PARAMS_FILE))
    os.chmod(os.path.join(out_dir, PARAMS_FILE), 0o644)  # safetensors writes 0600
    config = dataclasses.asdict(model.model_config)
    config["dtype"] = serve_dtype
    served = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_config": config,
        "tokenizer": model.tokenizer.to_json_str(),
        "pooling": model.pooling,
        "normalize": model.normalize,
        "label_names": list(model.label_names),
        "features": list(model.module.features),
        "max_len": model.max_len,
        "has_classifier": model.has_classifier,
        "projection_dim": model.module.projection_dim,
        "head_hidden": model.module.head_hidden,
        "temperature": model.temperature,
        # How the app serves it: "none" (float32 dense layers) or "int8" / "bfloat16" ones,
        # quantised from the stored parameters when loaded (jaxbert.quantize).
        "quantize": model.quantize,
        "exported_from": model.source,
        "exported_digest": feedback.params_digest(model.params),
    }
    with open(os.path.join(out_dir, SERVED_FILE), "w") as f:
        json.dump(served, f, indent=1)
    return out_dir


def load_served(path: str) -> SentenceModel:
    """A `SentenceModel` from a served folder (`save_served`), float32 parameters."""
    from safetensors.numpy import load_file

    with open(os.path.join(path, SERVED_FILE)) as f:
        served = json.load(f)
    if served.get("format") != FORMAT or served.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} is not a jaxbert served folder of version <= {FORMAT_VERSION} "
            f"(format {served.get('format')!r}, version {served.get('version')!r})"
        )
    flat = load_file(os.path.join(path, PARAMS_FILE))
    params = _unflatten({name: value.astype(np.float32) for name, value in flat.items()})
    return SentenceModel(
        model_config=BertConfig(**served["model_config"]),
        params=params,
        tokenizer=BertTokenizer.from_json_str(served["tokenizer"]),
        pooling=served["pooling"],
        normalize=served["normalize"],
        label_names=served["label_names"],
        features=served["features"],
        max_len=served["max_len"],
        has_classifier=served["has_classifier"],
        projection_dim=served.get("projection_dim", 0),
        head_hidden=served.get("head_hidden", 0),
        temperature=served.get("temperature", 1.0),
        source=f"{path} (exported from {served['exported_from']})",
        quantize=served.get("quantize", "none"),
    )


def load(path: str, quantize: str = "none") -> SentenceModel:
    """A served folder (served as its served.json says), else whatever `SentenceModel.load`
    reads (run directory, hf:<folder>), quantised as `quantize` says."""
    return load_served(path) if is_served(path) else SentenceModel.load(path, quantize=quantize)


# ---------------------------------------------------------------------------- bundle


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def build_wheel(out_dir: str) -> str:
    """The installed jaxbert package (its .py files) as a pure-Python wheel; returns its path.
    Written directly (a wheel is a zip with a dist-info folder), so no build backend or network
    is needed; its dependencies are the bundle's requirements.txt."""
    package = pathlib.Path(__file__).resolve().parent
    version = importlib.metadata.version("jaxbert")
    dist_info = f"jaxbert-{version}.dist-info"
    files = {
        str(path.relative_to(package.parent)): path.read_bytes()
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: jaxbert\nVersion: {version}\n"
        "Summary: BERT pretraining and Sentence-BERT in JAX (serving bundle)\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: jaxbert.deploy\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        writer.writerow(_record_line(name, data))
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"jaxbert-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return path


def requirements(wheel_name: str) -> str:
    """requirements.txt: the run-time distributions pinned to the installed versions (jax's CPU
    wheels; no PyTorch, no CUDA), then the jaxbert wheel."""
    lines = [
        "# CPU-only; pinned to the versions the bundle was exported and tested with.",
        "# No PyTorch, TensorFlow or CUDA packages: JAX runs on the CPU.",
    ]
    for name in RUNTIME_DISTRIBUTIONS:
        lines.append(f"{name}=={importlib.metadata.version(name)}")
    lines.append(f"./wheels/{wheel_name}")
    text = "\n".join(lines) + "\n"
    forbidden = [n for n in RUNTIME_DISTRIBUTIONS if n.startswith(FORBIDDEN)]
    if forbidden:
        raise ValueError(f"not for a CPU bundle: {forbidden}")
    return text


DOCKERFILE = """\
# Hugging Face Spaces (Docker SDK) or any container host: CPU only.
#   docker build -t jaxbert-app . && docker run -p 7860:7860 -v jaxbert-data:/data jaxbert-app
FROM python:{python}-slim
ENV PYTHONUNBUFFERED=1 \\
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
    JAX_PLATFORMS=cpu \\
    JAXBERT_FEEDBACK_DB=/data/feedback.sqlite3
# Spaces run the container as user 1000; /data is where Spaces mount persistent storage.
RUN useradd -m -u 1000 user && mkdir -p /data && chown user /data
WORKDIR /home/user/app
COPY --chown=user requirements.txt ./
COPY --chown=user wheels ./wheels
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=user . .
USER user
EXPOSE 7860
CMD ["streamlit", "run", "app.py", "--server.port=7860", "--server.address=0.0.0.0", \\
     "--", "--model", "model"]
"""

STREAMLIT_CONFIG = """\
# Streamlit settings for the bundle. Locally it listens on localhost only; the Dockerfile
# passes --server.address 0.0.0.0 (a container must listen on its network interface).

[server]
headless = true
address = "localhost"
# Megabytes per upload; app.py's MAX_UPLOAD_MB says the same to users.
maxUploadSize = 5
enableXsrfProtection = true

[browser]
gatherUsageStats = false

[client]
showErrorDetails = "type"
toolbarMode = "minimal"

[theme]
primaryColor = "#4f46e5"
"""

README = """\
---
title: jaxbert
emoji: 🔎
colorFrom: indigo
colorTo: blue
sdk: docker
app_port: 7860
pinned: false
---

# jaxbert: {source}

A Sentence-BERT model served by the jaxbert Streamlit app on the CPU. People's judgements of its
answers are kept in `$JAXBERT_FEEDBACK_DB` (`/data/feedback.sqlite3` in the container).

    pip install -r requirements.txt
    streamlit run app.py -- --model model          # http://localhost:8501

or `docker build -t jaxbert-app . && docker run -p 7860:7860 jaxbert-app`.
"""


def write_bundle(
    model_path: str, out: str, serve_dtype: str = SERVE_DTYPE, quantize: str = "none"
) -> dict:
    """Writes the bundle for the model at `model_path` (a run directory or hf:<folder>) to
    `out` (which must not exist or be empty); returns {"path", "bytes", "files"}. `quantize`
    ("int8", "bfloat16") is recorded in served.json: the app serves its dense layers so."""
    if os.path.exists(out) and os.listdir(out):
        raise FileExistsError(f"{out} exists and is not empty: choose a new folder")
    model = load(model_path, quantize=quantize)
    save_served(model, os.path.join(out, "model"), serve_dtype)
    shutil.copy(ROOT / "app.py", os.path.join(out, "app.py"))
    wheel = build_wheel(os.path.join(out, "wheels"))
    texts = {
        "requirements.txt": requirements(os.path.basename(wheel)),
        "Dockerfile": DOCKERFILE.format(python=f"{sys.version_info[0]}.{sys.version_info[1]}"),
        ".streamlit/config.toml": STREAMLIT_CONFIG,
        "README.md": README.format(source=model.source),
        ".dockerignore": "**/__pycache__\n",
    }
    for name, text in texts.items():
        path = os.path.join(out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    files = sorted(str(p.relative_to(out)) for p in pathlib.Path(out).rglob("*") if p.is_file())
    size = sum(os.path.getsize(os.path.join(out, f)) for f in files)
    return {"path": out, "bytes": size, "files": files}
