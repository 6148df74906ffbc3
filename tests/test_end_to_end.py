"""The whole pipeline in a temp directory: pretrain a few steps, resume, fine-tune from that run,
resume, evaluate, and serve from the run directory alone."""

import json
import os
import random

import numpy as np
import pytest

from jaxbert import evaluate, finetune, pretrain
from jaxbert.configs import finetune_config, pretrain_config
from jaxbert.data import nli
from jaxbert.serve import SentenceModel

SUBJECTS = ["a man", "a woman", "the child", "two dogs", "a musician", "the chef"]
ACTIONS = ["plays a guitar", "cooks dinner", "runs outside", "reads a book", "sleeps"]


def write_nli_file(path, n=96, seed=0):
    """A csv of pairs whose label follows a rule a tiny model can pick up."""
    rng = random.Random(seed)
    labels = ["entailment", "neutral", "contradiction"]
    with open(path, "w") as f:
        f.write("pairID,sentence1,sentence2,label\n")
        for i in range(n):
            subject, action = rng.choice(SUBJECTS), rng.choice(ACTIONS)
            label = labels[i % 3]
            hypothesis = {
                "entailment": f"{subject} {action}.",
                "neutral": f"{subject} {action} at night.",
                "contradiction": f"nobody {action}.",
            }[label]
            f.write(f'{i},"{subject.capitalize()} {action} in the park.",{hypothesis},{label}\n')


def write_sts_file(path, n=40, seed=1):
    """STS-B layout: tab separated, no header, score in column 4, sentences in 5 and 6."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            a = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}."
            b = a if i % 2 else f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}."
            f.write(f"main\tx\t2024\t{i}\t{5.0 if a == b else rng.uniform(0, 3):.2f}\t{a}\t{b}\n")


def tiny_pretrain_config(root):
    """A tiny BERT pretraining on 60 synthetic documents written into `root`."""
    from conftest import synthetic_documents

    corpus = root / "corpus.jsonl"
    with open(corpus, "w") as f:
        for text in synthetic_documents(60):
            f.write(json.dumps({"text": text}) + "\n")
    config = pretrain_config()
    config.data.train_files = str(corpus)
    config.data.cache_dir = str(root / "cache")
    config.data.val_documents = 6
    config.data.max_len = 32
    config.data.max_predictions = 5
    config.tokenizer.vocab_size = 300
    config.model.size = "tiny"
    config.model.max_position_embeddings = 64
    config.train.batch_size = 8
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.eval_every = 3
    config.train.checkpoint_every = 3
    config.train.eval_batches = 2
    return config


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = tiny_pretrain_config(root)
    run_dir = str(root / "pretrain")
    config.train.num_steps = 3
    first = pretrain.pretrain(config, run_dir)
    config.train.num_steps = 6
    second = pretrain.pretrain(config, run_dir)  # resumes at step 3
    return root, run_dir, first, second


def test_pretraining_resumes_and_records_metrics(pretrained_run):
    root, run_dir, first, second = pretrained_run
    assert first["steps"] == 3 and second["steps"] == 6 and second["steps_this_session"] == 3
    for key in ("mlm_accuracy", "perplexity", "nsp_accuracy", "eval_loss"):
        assert np.isfinite(second["final_eval"][key]), key
    model = SentenceModel.from_dir(run_dir)  # a pretraining run serves its encoder
    assert model.encode("the cat sat").shape == (128,)
    with pytest.raises(ValueError, match="no trained NLI classifier"):
        model.classify("a", "b")


def test_finetune_from_pretraining_then_evaluate_and_serve(pretrained_run):
    root, pretrain_dir, _, _ = pretrained_run
    write_nli_file(root / "nli.csv")
    write_nli_file(root / "nli_dev.csv", n=30, seed=5)
    write_sts_file(root / "sts-dev.csv")
    config = finetune_config()
    config.init_from = pretrain_dir
    config.data.train = str(root / "nli.csv")
    config.data.eval_nli = str(root / "nli_dev.csv")
    config.data.eval_sts = str(root / "sts-dev.csv")
    config.data.max_len = 32
    config.data.buckets = "16,32"
    config.optim.lr = 1e-3
    config.train.batch_size = 8
    config.train.log_every = 2
    config.train.eval_every = 4
    config.train.checkpoint_every = 4
    config.train.primary_metric = "nli_accuracy"
    run_dir = str(root / "sbert")
    config.train.num_steps = 4
    finetune.finetune(config, run_dir)
    config.train.num_steps = 8
    summary = finetune.finetune(config, run_dir)
    assert summary["steps"] == 8 and summary["steps_this_session"] == 4

    model = SentenceModel.from_dir(run_dir)
    assert model.label_names == nli.NLI_LABELS
    # The temperature fitted on the evaluation pairs for the best checkpoint is the model's, and
    # lowers (never raises) their cross-entropy; the predictions stay.
    with open(os.path.join(run_dir, "calibration.json")) as f:
        calibration = json.load(f)
    assert calibration["step"] == summary["best_step"] and "30 pairs" in calibration["fitted_on"]
    assert model.temperature == calibration["temperature"] != 1.0
    assert calibration["after"]["loss"] <= calibration["before"]["loss"]
    dev = nli.read_pairs(nli.resolve(str(root / "nli_dev.csv")))
    tempered = evaluate.evaluate_nli(model, dev)
    untempered = evaluate.evaluate_nli(model.with_temperature(1.0), dev)
    assert tempered["loss"] == pytest.approx(calibration["after"]["loss"], rel=1e-4)
    assert untempered["loss"] == pytest.approx(calibration["before"]["loss"], rel=1e-4)
    assert tempered["confusion"] == untempered["confusion"]
    probabilities = model.classify("A man plays a guitar in the park.", "a man plays a guitar.")
    assert set(probabilities) == set(nli.NLI_LABELS)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)

    report = evaluate.evaluate_dataset(
        model, nli.read_pairs(nli.resolve(str(root / "nli_dev.csv")))
    )
    assert report["n"] == 30 and 0.0 <= report["accuracy"] <= 1.0
    assert sum(map(sum, report["confusion"])) == 30
    sts = evaluate.evaluate_dataset(model, nli.read_pairs(nli.resolve(str(root / "sts-dev.csv"))))
    assert -100 <= sts["spearman"] <= 100
    path = evaluate.save_report(report, str(root / "eval"), "nli_dev")
    assert (root / "eval" / "nli_dev_confusion.png").exists() and path.endswith(".json")
    assert (root / "eval" / "nli_dev_reliability.png").exists()


def test_finetuning_changes_the_encoder(pretrained_run):
    """The original project's bug: the siamese network never trained its encoder."""
    import jax

    from jaxbert import checkpoint

    root, pretrain_dir, _, _ = pretrained_run
    before, _, _ = checkpoint.load_params(pretrain_dir, which="latest")
    after, _, _ = checkpoint.load_params(str(root / "sbert"), which="latest")
    changed = jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
        before["bert"],
        after["bert"],
    )
    layer = changed["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"]
    assert layer > 0
    assert changed["embeddings"]["word_embeddings"]["embedding"] > 0


def test_evaluate_pretraining_run_on_a_text_file(pretrained_run):
    root, run_dir, _, _ = pretrained_run
    from conftest import synthetic_documents

    held_out = root / "held_out.txt"
    held_out.write_text("\n\n".join(synthetic_documents(12, seed=7)) + "\n")
    report = evaluate.evaluate_pretraining(run_dir, str(held_out), batches=2, batch_size=8)
    assert 0.0 <= report["mlm_accuracy"] <= 1.0
    assert report["perplexity"] == pytest.approx(np.exp(report["mlm_loss"]), rel=1e-6)
    assert 0.0 <= report["nsp_accuracy"] <= 1.0


def test_pretraining_loss_falls_on_a_synthetic_corpus(tmp_path):

    config = tiny_pretrain_config(tmp_path)
    config.optim.lr = 2e-3
    config.train.batch_size = 16
    config.train.num_steps = 60
    config.train.log_every = 10
    config.train.eval_every = 30
    config.train.checkpoint_every = 60
    pretrain.pretrain(config, str(tmp_path / "run"))
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    mlm = [r["mlm_loss"] for r in records if r["split"] == "train"]
    evals = [r["mlm_loss"] for r in records if r["split"] == "eval"]
    assert mlm[-1] < mlm[0] - 1.0, mlm  # from ~ln(300) = 5.7 towards the corpus' entropy
    assert evals[-1] < evals[0]


def test_vocab_and_embedding_mismatch_is_an_error(pretrained_run):
    from jaxbert.data.tokenizer import BertTokenizer
    from jaxbert.model import BertConfig

    _, run_dir, _, _ = pretrained_run
    tokenizer = BertTokenizer.load(run_dir)
    small = BertConfig.from_size("tiny", vocab_size=tokenizer.vocab_size - 1)
    with pytest.raises(ValueError, match="tokenizer does not belong to this model"):
        pretrain.check_vocab(small, tokenizer)
    with pytest.raises(ValueError, match="embedding rows"):
        SentenceModel(model_config=small, params={}, tokenizer=tokenizer)


def test_export_script_writes_a_run_for_hugging_face(pretrained_run, tmp_path):
    import os
    import subprocess
    import sys

    import jax

    from jaxbert import checkpoint, hf

    _, run_dir, _, _ = pretrained_run
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "export.py")
    out = tmp_path / "exported"
    done = subprocess.run(
        [sys.executable, script, "--model", run_dir, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    params, _, _ = checkpoint.load_params(run_dir, which="best")
    exported = hf.load_pretrained(out)
    jax.tree.map(np.testing.assert_array_equal, exported.params["bert"], params["bert"])


def test_tiny_config_pretrains_on_the_embedded_sample_offline(tmp_path, monkeypatch):
    """configs/pretrain_tiny.py (the quick start) reads the corpus shipped inside the package and
    never reaches for the Hugging Face hub."""
    import importlib.util
    import pathlib

    from jaxbert import sample_data
    from jaxbert.data import sources

    def no_hub(*args, **kwargs):
        raise AssertionError("the tiny config reached for the Hugging Face hub")

    monkeypatch.setattr(sources, "_hub_records", no_hub)
    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "pretrain_tiny.py"
    spec = importlib.util.spec_from_file_location("pretrain_tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert config.data.train_files == sample_data.CORPUS
    # Two steps on a slice of the sample (the config's own run takes about a minute).
    config.data.max_documents = config.tokenizer.train_documents = 100
    config.data.val_documents = 5
    config.data.cache_dir = str(tmp_path / "cache")
    config.tokenizer.vocab_size = 1000
    config.train.batch_size = 8
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.train.eval_batches = 1
    summary = pretrain.pretrain(config, str(tmp_path / "run"))
    assert summary["steps"] == 2
    assert np.isfinite(summary["final_eval"]["eval_loss"])
