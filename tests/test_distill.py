"""Distillation (teacher cache, student cut out of a teacher, the distill objective) and the
ranking / distillation losses, on tiny models built in a temp directory."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_end_to_end import tiny_pretrain_config, write_nli_file, write_sts_file

from jaxbert import distill, finetune, losses, pretrain
from jaxbert.configs import finetune_config
from jaxbert.serve import SentenceModel

# ----------------------------------------------------------------------------- losses


def _cosent_reference(cos, scores, weights, scale):
    terms = [
        scale * (cos[j] - cos[i])
        for i in range(len(cos))
        for j in range(len(cos))
        if weights[i] > 0 and weights[j] > 0 and scores[i] > scores[j]
    ]
    return float(np.log1p(np.sum(np.exp(terms)))) if terms else 0.0


def test_cosent_matches_its_formula_and_ignores_padding_rows():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 6, 8)).astype(np.float32)
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.3, 0.7], np.float32)
    weights = np.array([1, 1, 1, 1, 1, 0], np.float32)
    cos = np.asarray(losses.cosine_similarity(u, v))
    got = float(losses.cosent_loss(u, v, scores, weights, scale=20.0))
    assert got == pytest.approx(_cosent_reference(cos, scores, weights, 20.0), rel=1e-5)
    moved = u.copy()
    moved[5] = -u[5]  # the padding row's pair changes; the loss must not
    assert float(losses.cosent_loss(moved, v, scores, weights)) == pytest.approx(got, rel=1e-6)


def test_cosent_prefers_cosines_in_the_order_of_the_scores():
    u = jnp.eye(3, 4)
    ordered = jnp.array([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, 1.0]])  # cos 1, .71, 0
    scores = jnp.array([1.0, 0.5, 0.0])
    weights = jnp.ones(3)
    right = float(losses.cosent_loss(u, ordered, scores, weights))
    wrong = float(losses.cosent_loss(u, ordered, scores[::-1], weights))
    assert right < 0.01 < wrong


def test_distillation_loss_is_zero_at_the_teacher_and_masks_padding():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(5, 6)).astype(np.float32)
    weights = np.array([1, 1, 1, 1, 0], np.float32)
    student = teacher.copy()
    student[4] += 3.0  # padding row
    loss, mse, sim = losses.distillation_loss(student, teacher, weights, similarity_weight=1.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    student[0] += 0.5
    loss, mse, sim = losses.distillation_loss(student, teacher, weights, similarity_weight=2.0)
    assert float(mse) == pytest.approx(float(np.mean(0.25 * np.ones(6)) / 4), rel=1e-5)
    assert float(loss) == pytest.approx(float(mse) + 2.0 * float(sim), rel=1e-6)


# ----------------------------------------------------------------------------- a tiny teacher


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny pretraining run: its encoder (mean pooling) is the teacher."""
    root = tmp_path_factory.mktemp("teacher")
    config = tiny_pretrain_config(root)
    config.model.hidden_dropout = 0.0
    pretrain.pretrain(config, str(root / "run"))
    return root


def _sentences(n=64):
    from test_end_to_end import ACTIONS, SUBJECTS

    return [f"{s} {a} number {i}." for i, (s, a) in enumerate(zip(SUBJECTS * 20, ACTIONS * 20))][:n]


def test_teacher_embeddings_are_cached_and_resume(teacher_dir, tmp_path, monkeypatch):
    teacher = SentenceModel.from_dir(str(teacher_dir / "run"))
    sentences = _sentences(40)
    calls = []
    encode = teacher.encode

    def counting_encode(texts, batch_size=64):
        calls.append(len(texts))
        return encode(texts, batch_size=batch_size)

    monkeypatch.setattr(teacher, "encode", counting_encode)
    monkeypatch.setattr(distill, "CHUNK", 16)
    first = np.array(distill.teacher_embeddings(teacher, sentences, str(tmp_path)))
    assert calls == [16, 16, 8]
    np.testing.assert_allclose(first, encode(sentences), atol=1e-5)
    second = distill.teacher_embeddings(teacher, sentences, str(tmp_path))
    assert calls == [16, 16, 8]  # read from the cache
    np.testing.assert_array_equal(first, second)

    # An encoding stopped after its first chunk resumes there.
    (progress,) = tmp_path.glob("*.json")
    progress.write_text(json.dumps({"rows": 40, "width": first.shape[1], "done": 16}))
    calls.clear()
    third = distill.teacher_embeddings(teacher, sentences, str(tmp_path))
    assert calls == [16, 8]
    np.testing.assert_array_equal(first, third)
    # Other sentences are another cache entry.
    distill.teacher_embeddings(teacher, sentences[:10], str(tmp_path))
    assert calls[-1] == 10


def test_a_student_cut_with_every_layer_and_token_is_the_teacher(teacher_dir, tmp_path):
    teacher = SentenceModel.from_dir(str(teacher_dir / "run"))
    layers = range(teacher.model_config.num_layers)
    config, tokenizer, params = distill.student_from_teacher(teacher, layers, None, str(tmp_path))
    student = SentenceModel(model_config=config, params=params, tokenizer=tokenizer)
    sentences = _sentences(8)
    np.testing.assert_allclose(student.encode(sentences), teacher.encode(sentences), atol=1e-5)


def test_a_trimmed_vocabulary_still_spells_every_word(teacher_dir, tmp_path):
    teacher = SentenceModel.from_dir(str(teacher_dir / "run"))
    sentences = _sentences(64)
    counts = distill.token_counts(teacher.tokenizer, sentences)
    everything_used = distill.trimmed_vocabulary(teacher.tokenizer, counts, 1000)
    assert set(np.flatnonzero(counts).tolist()) <= set(everything_used.tolist())
    assert len(everything_used) < teacher.tokenizer.vocab_size  # unused tokens are dropped
    keep = distill.trimmed_vocabulary(teacher.tokenizer, counts, 100)
    assert len(keep) == 100 and set(teacher.tokenizer.special_ids) <= set(keep.tolist())
    config, tokenizer, params = distill.student_from_teacher(teacher, [1], keep, str(tmp_path))
    assert tokenizer.vocab_size == 100 and config.num_layers == 1
    assert params["bert"]["embeddings"]["word_embeddings"]["embedding"].shape[0] == 128
    text = "the queen reads about a garden"
    ids = tokenizer.encode_batch([text], max_length=64)[0]
    assert tokenizer.unk_id not in ids.tolist()
    assert tokenizer.decode(ids).replace(" ##", "") == text
    with pytest.raises(ValueError, match="smaller than the"):
        distill.trimmed_vocabulary(teacher.tokenizer, counts, 5)
    with pytest.raises(ValueError, match="student layers"):
        distill.student_from_teacher(teacher, [7], keep, str(tmp_path))


def test_a_factorised_student_embeds_with_the_best_low_rank_table(teacher_dir, tmp_path):
    teacher = SentenceModel.from_dir(str(teacher_dir / "run"))
    layers = range(teacher.model_config.num_layers)
    config, tokenizer, params = distill.student_from_teacher(
        teacher, layers, None, str(tmp_path), embedding_size=32
    )
    assert config.embedding_size == 32
    embeddings = params["bert"]["embeddings"]
    table = embeddings["word_embeddings"]["embedding"]
    projection = embeddings["word_embeddings_projection"]
    assert table.shape[1] == 32 and projection.shape == (32, teacher.model_config.hidden_size)
    # The product is the truncated SVD of the uncut table: its best rank-32 approximation.
    _, _, plain = distill.student_from_teacher(teacher, layers, None, str(tmp_path / "plain"))
    full = plain["bert"]["embeddings"]["word_embeddings"]["embedding"]
    u, s, vt = np.linalg.svd(full, full_matrices=False)
    np.testing.assert_allclose(table @ projection, (u[:, :32] * s[:32]) @ vt[:32], atol=1e-4)
    student = SentenceModel(model_config=config, params=params, tokenizer=tokenizer)
    sentences = _sentences(8)
    ours, theirs = student.encode(sentences), teacher.encode(sentences)
    cosines = (
        (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    )
    assert cosines.min() > 0.5, cosines  # close to the teacher, not equal to it
    with pytest.raises(ValueError, match="embedding size"):
        distill.student_from_teacher(teacher, [0], None, str(tmp_path), embedding_size=128)


# ----------------------------------------------------------------------------- the objective


def _distill_config(root, teacher_run):
    write_nli_file(root / "nli.csv")
    write_sts_file(root / "sts-dev.csv")
    config = finetune_config()
    config.sbert.objective = "distill"
    config.sbert.normalize = True
    config.distill.teacher = teacher_run
    config.distill.pair_datasets = str(root / "nli.csv")
    config.distill.cache_dir = str(root / "teacher_cache")
    config.data.eval_nli = ""
    config.data.eval_sts = str(root / "sts-dev.csv")
    config.data.max_len = 32
    config.data.buckets = "16,32"
    config.model.hidden_dropout = 0.0
    config.model.attention_dropout = 0.0
    config.optim.lr = 3e-3
    config.optim.warmup_fraction = 0.0
    config.train.batch_size = 16
    config.train.num_steps = 30
    config.train.log_every = 5
    config.train.eval_every = 30
    config.train.checkpoint_every = 30
    return config


def test_distilling_a_wider_student_projects_and_lowers_the_mse(teacher_dir, tmp_path):
    config = _distill_config(tmp_path, str(teacher_dir / "run"))
    config.tokenizer.vocab_file = str(tmp_path / "vocab.txt")
    teacher = SentenceModel.from_dir(str(teacher_dir / "run"))
    (tmp_path / "vocab.txt").write_text("\n".join(teacher.tokenizer.id_to_token_list()) + "\n")
    config.model.size = "mini"  # hidden 256, the tiny teacher's is 128: a projection
    summary = finetune.finetune(config, str(tmp_path / "student"))
    records = [json.loads(line) for line in open(tmp_path / "student" / "metrics.jsonl")]
    mse = [r["mse"] for r in records if r["split"] == "train"]
    assert mse[-1] < 0.5 * mse[0], mse
    assert summary["steps"] == 30
    student = SentenceModel.from_dir(str(tmp_path / "student"))
    assert student.hidden_size == teacher.hidden_size == 128
    assert student.model_config.hidden_size == 256
    assert student.encode(["a man sleeps."]).shape == (1, 128)


def test_a_student_cut_from_the_teacher_trains_and_resumes(teacher_dir, tmp_path):
    config = _distill_config(tmp_path, str(teacher_dir / "run"))
    config.distill.student_init = "teacher"
    config.distill.student_layers = "1"
    config.distill.student_embedding_size = 32
    config.train.num_steps = 4
    config.train.checkpoint_every = 2
    finetune.finetune(config, str(tmp_path / "cut"))
    config.train.num_steps = 6
    summary = finetune.finetune(config, str(tmp_path / "cut"))
    assert summary["steps"] == 6 and summary["steps_this_session"] == 2
    student = SentenceModel.from_dir(str(tmp_path / "cut"))
    assert student.model_config.num_layers == 1 and student.module.projection_dim == 0
    assert student.model_config.embedding_size == 32


def test_a_bad_teacher_is_one_clear_error(tmp_path):
    config = _distill_config(tmp_path, str(tmp_path / "no_such_run"))
    with pytest.raises(ValueError, match="cannot load the teacher"):
        finetune.finetune(config, str(tmp_path / "x"))
    config.distill.teacher = ""
    with pytest.raises(ValueError, match="needs config.distill.teacher"):
        finetune.finetune(config, str(tmp_path / "x"))


def test_cosent_objective_and_a_frozen_encoder_with_an_mlp_head(teacher_dir, tmp_path):
    from jaxbert import checkpoint

    write_sts_file(tmp_path / "sts-train.csv", n=64)
    write_nli_file(tmp_path / "nli.csv")
    write_sts_file(tmp_path / "sts-dev.csv")
    config = finetune_config()
    config.init_from = str(teacher_dir / "run")
    config.sbert.objective = "cosent"
    config.data.train = str(tmp_path / "sts-train.csv")
    config.data.eval_nli = ""
    config.data.eval_sts = str(tmp_path / "sts-dev.csv")
    config.data.max_len = 32
    config.data.buckets = "16,32"
    config.optim.lr = 1e-3
    config.train.batch_size = 16
    config.train.num_steps = 4
    config.train.checkpoint_every = 4
    finetune.finetune(config, str(tmp_path / "cosent"))
    before, _, _ = checkpoint.load_params(str(teacher_dir / "run"), which="latest")
    after, _, _ = checkpoint.load_params(str(tmp_path / "cosent"), which="latest")
    assert not np.array_equal(
        before["bert"]["embeddings"]["word_embeddings"]["embedding"],
        after["bert"]["embeddings"]["word_embeddings"]["embedding"],
    )

    # The softmax stage with optim.freeze="bert": only the (MLP) head learns.
    config.init_from = str(tmp_path / "cosent")
    config.sbert.objective = "softmax"
    config.sbert.head_hidden = 32
    config.sbert.features = "u,v,|u-v|,u*v"
    config.optim.freeze = "bert"
    config.data.train = str(tmp_path / "nli.csv")
    config.data.eval_nli = str(tmp_path / "nli.csv")
    config.train.primary_metric = "nli_accuracy"
    finetune.finetune(config, str(tmp_path / "head"))
    head, _, _ = checkpoint.load_params(str(tmp_path / "head"), which="latest")
    jax.tree.map(np.testing.assert_array_equal, head["bert"], after["bert"])
    assert head["classifier_hidden"]["kernel"].shape == (4 * 128, 32)
    model = SentenceModel.from_dir(str(tmp_path / "head"))
    assert sum(model.classify("a man sleeps.", "nobody sleeps.").values()) == pytest.approx(1.0)

    config.optim.freeze = "encoder"
    with pytest.raises(ValueError, match="optim.freeze names"):
        finetune.finetune(config, str(tmp_path / "bad_freeze"))


def test_simcse_pairs_each_text_sentence_with_itself_and_trains(teacher_dir, tmp_path):
    from jaxbert import checkpoint

    write_sts_file(tmp_path / "sts-dev.csv")
    config = finetune_config()
    config.init_from = str(teacher_dir / "run")
    config.sbert.objective = "mnr"
    config.data.train = "simcse:" + str(teacher_dir / "corpus.jsonl")
    config.data.max_train_pairs = 40
    config.data.eval_nli = ""
    config.data.eval_sts = str(tmp_path / "sts-dev.csv")
    config.data.max_len = 32
    config.data.buckets = "16,32"
    config.train.batch_size = 8
    config.train.num_steps = 3
    config.train.checkpoint_every = 3
    pairs = finetune.read_training_pairs(config)
    assert len(pairs) == 40 and pairs.sentence1 == pairs.sentence2
    assert len(set(pairs.sentence1)) > 30  # sentences of many documents, not one repeated
    finetune.finetune(config, str(tmp_path / "simcse"))
    before, _, _ = checkpoint.load_params(str(teacher_dir / "run"), which="latest")
    after, _, _ = checkpoint.load_params(str(tmp_path / "simcse"), which="latest")
    query = ("bert", "encoder", "layer", "0", "attention", "self", "query", "kernel")

    def pick(tree):
        for key in query:
            tree = tree[key]
        return np.asarray(tree)

    assert not np.array_equal(pick(before), pick(after))
    config.model.hidden_dropout = 0.0
    with pytest.raises(ValueError, match="needs dropout"):
        finetune.read_training_pairs(config)
    config.model.hidden_dropout = 0.1
    config.sbert.objective = "softmax"
    with pytest.raises(ValueError, match="use sbert.objective='mnr'"):
        finetune.read_training_pairs(config)


# ----------------------------------------------------------------------------- NLI + CoSENT mixed


def _mixed_config(tmp_path, teacher_dir):
    write_nli_file(tmp_path / "nli.csv")
    write_sts_file(tmp_path / "sts-train.csv", n=64)
    config = finetune_config()
    config.init_from = str(teacher_dir / "run")
    config.sbert.objective = "softmax"
    config.data.train = str(tmp_path / "nli.csv")
    config.data.train_scores = str(tmp_path / "sts-train.csv")
    config.data.eval_nli = str(tmp_path / "nli.csv")
    config.data.eval_sts = ""
    config.data.max_len = 32
    config.data.buckets = "8,16,32"
    config.optim.lr = 1e-3
    config.train.batch_size = 16
    config.train.num_steps = 4
    config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.train.primary_metric = "nli_accuracy"
    return config


def _small_batches(path, config, tokenizer, seed):
    """Batches of 8 pairs of the file at `path`, in buckets of 8, 16 and 32 tokens."""
    from jaxbert.data import nli
    from jaxbert.data.pair_batches import PairBatches, TokenizedPairs

    dataset = nli.read_pairs(finetune._resolve(str(path), config))
    pairs = TokenizedPairs.build(dataset, tokenizer, 32)
    return PairBatches(pairs, batch_size=8, buckets=(8, 16, 32), seed=seed, pad_id=0)


def test_mixed_batches_pad_both_parts_to_one_length_and_resume(teacher_dir, tmp_path):
    config = _mixed_config(tmp_path, teacher_dir)
    tokenizer = SentenceModel.from_dir(str(teacher_dir / "run")).tokenizer

    def batches(path, seed):
        return _small_batches(path, config, tokenizer, seed)

    nli_path, sts_path = tmp_path / "nli.csv", tmp_path / "sts-train.csv"
    mixed = finetune.MixedBatches(batches(nli_path, 0), batches(sts_path, 0))
    alone_nli, alone_sts = batches(nli_path, 0), batches(sts_path, 0)
    assert len(mixed) == len(alone_nli) == 12
    seen = []
    for _ in range(len(alone_sts) + 3):  # the scored pairs cycle past their own epoch
        batch, nli_batch, sts_batch = next(mixed), next(alone_nli), next(alone_sts)
        length = max(nli_batch["input_ids_a"].shape[1], sts_batch["input_ids_a"].shape[1])
        seen.append((nli_batch["input_ids_a"].shape[1], sts_batch["input_ids_a"].shape[1]))
        for part, prefix, suffix in ((nli_batch, "", ""), (sts_batch, "scored_", "_scored")):
            np.testing.assert_array_equal(batch[f"{prefix}labels"], part["labels"])
            np.testing.assert_array_equal(batch[f"{prefix}weights"], part["weights"])
            for side in "ab":
                for key in ("input_ids", "attention_mask"):
                    got = batch[f"{key}{suffix}_{side}"]
                    width = part[f"{key}_{side}"].shape[1]
                    assert got.shape == (8, length)
                    np.testing.assert_array_equal(got[:, :width], part[f"{key}_{side}"])
                    assert not got[:, width:].any()  # padding: pad id 0, mask 0
    assert any(a != b for a, b in seen)  # some steps did pad one part to the other's bucket

    state = mixed.state()
    expected = next(mixed)
    resumed = finetune.MixedBatches(batches(nli_path, 0), batches(sts_path, 0))
    resumed.restore(json.loads(json.dumps(state)))
    jax.tree.map(np.testing.assert_array_equal, next(resumed), expected)


def test_the_mixed_loss_is_the_softmax_loss_plus_weighted_cosent(teacher_dir, tmp_path):
    from jaxbert import checkpoint
    from jaxbert.sbert import SentenceBert

    config = _mixed_config(tmp_path, teacher_dir)
    config.model.hidden_dropout = 0.0  # the same embeddings whatever the batch's shape
    config.model.attention_dropout = 0.0
    config.sbert.cosent_weight = 0.7
    model_config, tokenizer, params = checkpoint.load_encoder(config.init_from)
    model_config = dataclasses.replace(model_config, hidden_dropout=0.0, attention_dropout=0.0)
    module = SentenceBert(model_config, pooling="mean", num_labels=3, features=("u", "v", "|u-v|"))
    ids = jnp.zeros((1, 8), jnp.int32)
    init = module.init(jax.random.key(0), ids, jnp.ones_like(ids))["params"]
    params = dict(init, bert=params["bert"])

    def batches(path):
        return _small_batches(path, config, tokenizer, seed=3)

    nli_path, sts_path = tmp_path / "nli.csv", tmp_path / "sts-train.csv"
    mixed = finetune.MixedBatches(batches(nli_path), batches(sts_path))
    nli_alone, sts_alone = batches(nli_path), batches(sts_path)
    loss_fn = finetune.make_loss_fn(module, config)
    rng = jax.random.key(1)
    for _ in range(3):
        batch, nli_batch, sts_batch = next(mixed), next(nli_alone), next(sts_alone)
        total, metrics = loss_fn(params, batch, rng)
        softmax, _ = loss_fn(params, nli_batch, rng)
        u, v = (
            module.apply(
                {"params": params},
                sts_batch[f"input_ids_{s}"],
                sts_batch[f"attention_mask_{s}"],
                method=SentenceBert.encode,
            )
            for s in "ab"
        )
        cosent = losses.cosent_loss(u, v, sts_batch["labels"], sts_batch["weights"])
        assert float(metrics["cosent"]) == pytest.approx(float(cosent), rel=1e-4)
        assert float(total) == pytest.approx(float(softmax) + 0.7 * float(cosent), rel=1e-4)


def test_finetuning_with_the_mixed_loss_trains_logs_and_resumes(teacher_dir, tmp_path):
    config = _mixed_config(tmp_path, teacher_dir)
    run = str(tmp_path / "mixed")
    config.train.num_steps = 2
    finetune.finetune(config, run)
    config.train.num_steps = 4
    summary = finetune.finetune(config, run)  # resumes at step 2, both data positions restored
    assert (summary["steps"], summary["steps_this_session"]) == (4, 2)
    rows = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    train_rows = [r for r in rows if r.get("split") == "train"]
    assert train_rows and all(np.isfinite(r["cosent"]) and r["cosent"] > 0 for r in train_rows)


def test_mixed_loss_errors_are_clear(teacher_dir, tmp_path):
    config = _mixed_config(tmp_path, teacher_dir)
    config.optim.freeze = "bert"
    with pytest.raises(ValueError, match="optim.freeze='bert' holds"):
        finetune.finetune(config, str(tmp_path / "x"))
    config.optim.freeze = ""
    config.data.train_scores = str(tmp_path / "nli.csv")
    with pytest.raises(ValueError, match="needs similarity scores"):
        finetune.finetune(config, str(tmp_path / "x"))
    config.data.train_scores = str(tmp_path / "sts-train.csv")
    config.sbert.objective = "mnr"
    with pytest.raises(ValueError, match="adds a CoSENT loss to the softmax objective"):
        finetune.finetune(config, str(tmp_path / "x"))
