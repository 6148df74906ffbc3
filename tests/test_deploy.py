"""Deployment bundles (jaxbert.deploy, scripts/export.py --deploy): the 16-bit served model
answers as the run does, and the bundle runs the app with nothing from this checkout."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from test_app import build_tiny_run

from jaxbert import deploy, feedback
from jaxbert.serve import SentenceModel

ROOT = pathlib.Path(__file__).resolve().parents[1]
SENTENCES = ["A man plays a guitar in the park.", "nobody plays a guitar.", "A chef cooks."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_run(str(tmp_path_factory.getbasetemp() / "app_model"))


def test_served_folder_answers_as_the_run_does(tiny, tmp_path):
    run = SentenceModel.from_dir(tiny["run"])
    path = deploy.save_served(run, str(tmp_path / "model"))
    assert deploy.is_served(path) and not deploy.is_served(tiny["run"])
    served = deploy.load(path)
    assert served.label_names == run.label_names and served.has_classifier
    assert served.max_len == run.max_len and served.tokenizer.vocab_size == run.tokenizer.vocab_size
    a, b = run.encode(SENTENCES), served.encode(SENTENCES)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9999  # float16 storage, float32 compute
    expected = run.classify(SENTENCES[0], SENTENCES[1])
    got = served.classify(SENTENCES[0], SENTENCES[1])
    assert got == pytest.approx(expected, abs=2e-3)
    leaves = [np.asarray(x).dtype for x in __import__("jax").tree.leaves(served.params)]
    assert set(leaves) == {np.dtype("float32")}
    assert feedback.params_digest(served.params) != feedback.params_digest(run.params)
    assert "exported from" in served.source


def test_wheel_holds_the_package(tmp_path):
    wheel = deploy.build_wheel(str(tmp_path))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(next(n for n in names if n.endswith("RECORD"))).decode()
    assert "jaxbert/serve.py" in names and "jaxbert/deploy.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(name in record for name in names)


@pytest.mark.slow
def test_export_a_bundle_and_run_the_app_from_it_alone(tiny, tmp_path):
    out = tmp_path / "bundle"
    env = dict(os.environ, JAXBERT_COMPILATION_CACHE="")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/export.py"),
            f"--deploy={out}",
            f"--model={tiny['run']}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {"app.py", "Dockerfile", "requirements.txt", ".streamlit/config.toml"} <= files
    assert {"model/params.safetensors", "model/served.json"} <= files
    requirements = (out / "requirements.txt").read_text()
    assert "torch" not in requirements and "cuda" not in requirements
    assert "jax==" in requirements and "./wheels/jaxbert-" in requirements
    dockerfile = (out / "Dockerfile").read_text()
    assert '"--", "--model", "model"' in dockerfile and "useradd -m -u 1000" in dockerfile

    # Elsewhere, with the wheel installed into a folder of its own and nothing of the checkout.
    moved = shutil.move(str(out), str(tmp_path / "elsewhere"))
    site = tmp_path / "site"
    wheel = next((pathlib.Path(moved) / "wheels").glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, "--target", str(site), str(wheel)], check=True)
    check = f"""
import jaxbert
assert jaxbert.__file__.startswith({str(site)!r}), jaxbert.__file__
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=180).run()
assert not at.exception, at.exception
at.text_area(key="pair_a").input("A man plays a guitar in the park.")
at.text_area(key="pair_b").input("nobody plays a guitar.")
at.button(key="FormSubmitter:pair_form-Predict").click().run()
labels = {{m.label: m.value for m in at.tabs[0].metric}}
at.button(key="pair_judge_right").click().run()
assert not at.exception, at.exception
print("LABEL", labels["Predicted label"], "SAVED", at.tabs[0].success[0].value)
"""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(site),
        "JAXBERT_MODEL": "model",
        "JAXBERT_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=moved, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SAVED Saved: you said" in done.stdout
    expected = SentenceModel.from_dir(tiny["run"]).classify(
        "A man plays a guitar in the park.", "nobody plays a guitar."
    )
    assert f"LABEL {max(expected, key=expected.get)}" in done.stdout
    assert feedback.FeedbackStore(env["JAXBERT_FEEDBACK_DB"]).count() == 1
