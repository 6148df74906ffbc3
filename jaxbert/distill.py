"""Embedding distillation: the sentences a student learns from, the teacher's embeddings of them
(computed once, cached on disk), and a student cut out of the teacher.

The teacher is anything `SentenceModel.load` reads (`hf:<folder>`, a Hugging Face or
sentence-transformers folder, a jaxbert run directory). Its embeddings are written to a float32
memmap under `cache_dir`, named by a digest of the teacher (its parameters, tokenizer, pooling)
and of the sentences, so a second run, or a rerun after an interruption, reads them instead of
encoding again (an interrupted encoding resumes at its last finished chunk).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxbert.data import nli, sources
from jaxbert.data.sentences import split_sentences
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig, padded_vocab_size
from jaxbert.serve import SentenceModel

log = logging.getLogger(__name__)

CHUNK = 4096  # sentences encoded between two progress marks of the cache


def text_sentences(
    files: str,
    max_sentences: int,
    *,
    min_words: int = 4,
    max_words: int = 48,
    text_field: str = "text",
    seed: int = 0,
) -> list[str]:
    """Up to `max_sentences` sentences of `min_words`..`max_words` words from local text files
    (any format `sources.iter_documents` reads), drawn evenly over the documents: each
    document gives at most a few, so a small budget still sees many topics."""
    if max_sentences <= 0 or not files:
        return []
    rng = np.random.default_rng(seed)
    per_document, out = 8, []
    for text in sources.iter_documents(files=files, text_field=text_field):
        candidates = [
            s.strip()
            for s in split_sentences(text)
            if min_words <= len(s.split()) <= max_words and not s.strip().endswith(":")
        ]
        if len(candidates) > per_document:
            picks = rng.choice(len(candidates), per_document, replace=False)
            candidates = [candidates[i] for i in sorted(picks)]
        out.extend(candidates)
        if len(out) >= max_sentences:
            break
    return out[:max_sentences]


def pair_sentences(specs: Iterable[str], root: str | None = None) -> list[str]:
    """Every sentence of the pair datasets `specs` (presets or files), in order."""
    out = []
    for spec in specs:
        dataset = nli.read_pairs(nli.resolve(spec, root=root))
        out.extend(dataset.sentence1)
        out.extend(dataset.sentence2)
    return out


def unique(sentences: Iterable[str]) -> list[str]:
    """Sentences without repeats (after strip), first occurrence kept, empty ones dropped."""
    seen, out = set(), []
    for s in sentences:
        s = s.strip()
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def model_digest(model: SentenceModel) -> str:
    """A digest of what decides a model's embeddings: parameters, tokenizer, pooling."""
    h = hashlib.sha256()
    h.update(model.tokenizer.to_json_str().encode())
    h.update(json.dumps([model.pooling, model.normalize, model.max_len]).encode())
    for path, leaf in sorted(
        jax.tree_util.tree_leaves_with_path(model.params), key=lambda kv: str(kv[0])
    ):
        h.update(str(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def _sentences_digest(sentences: Sequence[str]) -> str:
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def teacher_embeddings(
    teacher: SentenceModel, sentences: Sequence[str], cache_dir: str, batch_size: int = 64
) -> np.ndarray:
    """float32 [len(sentences), teacher width]: the teacher's embeddings, from the cache when
    there, else computed (with a progress bar) and cached. Read-only memmap."""
    if not sentences:
        raise ValueError("no sentences to distil on")
    os.makedirs(cache_dir, exist_ok=True)
    key = f"{model_digest(teacher)}-{_sentences_digest(sentences)}"
    data_path = os.path.join(cache_dir, f"{key}.f32")
    progress_path = os.path.join(cache_dir, f"{key}.json")
    n, width = len(sentences), teacher.hidden_size
    done = 0
    if os.path.exists(progress_path) and os.path.exists(data_path):
        with open(progress_path) as f:
            progress = json.load(f)
        if progress.get("rows") == n and progress.get("width") == width:
            done = int(progress["done"])
    if done >= n:
        log.info("teacher embeddings of %d sentences read from %s", n, data_path)
        return np.memmap(data_path, np.float32, "r", shape=(n, width))
    mode = "r+" if done else "w+"
    out = np.memmap(data_path, np.float32, mode, shape=(n, width))
    with tqdm(total=n, initial=done, desc="teacher embeddings", unit="sent") as bar:
        for start in range(done, n, CHUNK):
            chunk = sentences[start : start + CHUNK]
            out[start : start + len(chunk)] = teacher.encode(list(chunk), batch_size=batch_size)
            out.flush()
            # Written after the rows it counts, so a kill between the two only redoes a chunk.
            with open(progress_path + ".tmp", "w") as f:
                json.dump({"rows": n, "width": width, "done": start + len(chunk)}, f)
            os.replace(progress_path + ".tmp", progress_path)
            bar.update(len(chunk))
    del out
    return np.memmap(data_path, np.float32, "r", shape=(n, width))


def token_counts(tokenizer: BertTokenizer, sentences: Sequence[str]) -> np.ndarray:
    """int64 [vocab]: how often each token id occurs in the sentences."""
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    for start in range(0, len(sentences), 10000):
        ids = tokenizer.encode_batch(list(sentences[start : start + 10000]), max_length=512)
        np.add.at(counts, np.concatenate(ids), 1)
    return counts


def trimmed_vocabulary(tokenizer: BertTokenizer, counts: np.ndarray, size: int) -> np.ndarray:
    """Sorted token ids to keep: the special tokens, every single character and '##'
    character (so WordPiece can still spell any word it could before) and then the most
    frequent tokens, up to `size` ids in all."""
    tokens = tokenizer.id_to_token_list()
    keep = set(tokenizer.special_ids)
    keep |= {i for i, t in enumerate(tokens) if len(t) == 1 or (t.startswith("##") and len(t) == 3)}
    if len(keep) > size:
        raise ValueError(
            f"student_vocab {size} is smaller than the {len(keep)} special and character tokens"
        )
    for i in np.argsort(-counts, kind="stable"):
        if len(keep) >= size or counts[i] == 0:
            break
        keep.add(int(i))
    return np.array(sorted(keep), np.int64)


def pruned_feed_forward(layer: dict, size: int) -> dict:
    """The layer with its feed-forward block cut to the `size` intermediate units that matter
    most (the product of each unit's input and output weight norms), in their original order."""
    inner, outer = layer["intermediate"]["dense"], layer["output"]["dense"]
    importance = np.linalg.norm(inner["kernel"], axis=0) * np.linalg.norm(outer["kernel"], axis=1)
    keep = np.sort(np.argsort(-importance, kind="stable")[:size])
    return dict(
        layer,
        intermediate={"dense": {"kernel": inner["kernel"][:, keep], "bias": inner["bias"][keep]}},
        output=dict(
            layer["output"], dense={"kernel": outer["kernel"][keep], "bias": outer["bias"]}
        ),
    )


def student_from_teacher(
    teacher: SentenceModel,
    layers: Sequence[int],
    keep_ids: np.ndarray | None,
    out_dir: str,
    vocab_multiple: int = 128,
    intermediate_size: int = 0,
    embedding_size: int = 0,
) -> tuple[BertConfig, BertTokenizer, dict]:
    """A smaller encoder cut out of the teacher (as DistilBERT and sentence-transformers'
    distillation example start their students): the teacher's layers `layers`, in order, their
    feed-forward blocks pruned to `intermediate_size` units (0 = kept whole), and its embedding
    rows `keep_ids` (all when None), factorised to `embedding_size` (0 = not) by a truncated
    SVD: a [vocab, embedding_size] table times an [embedding_size, hidden] map, the best
    approximation of that rank. Writes the student's vocab.txt to `out_dir`.
    Returns (config, tokenizer, {"bert": params})."""
    bert = jax.tree.map(np.asarray, teacher.params["bert"])
    config = teacher.model_config
    if not layers or any(not 0 <= i < config.num_layers for i in layers):
        raise ValueError(f"student layers {list(layers)} must be among 0..{config.num_layers - 1}")
    tokens = teacher.tokenizer.id_to_token_list()
    if keep_ids is None:
        keep_ids = np.arange(len(tokens))
    os.makedirs(out_dir, exist_ok=True)
    vocab_path = os.path.join(out_dir, "student_vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.writelines(tokens[i] + "\n" for i in keep_ids)
    tokenizer = BertTokenizer.from_vocab(vocab_path, lowercase=_lowercases(teacher.tokenizer))
    rows = padded_vocab_size(len(keep_ids), vocab_multiple)
    word = bert["embeddings"]["word_embeddings"]["embedding"]
    new_word = np.zeros((rows, word.shape[1]), word.dtype)
    new_word[: len(keep_ids)] = word[keep_ids]
    embeddings = dict(bert["embeddings"], word_embeddings={"embedding": new_word})
    if embedding_size:
        if not 0 < embedding_size < word.shape[1]:
            raise ValueError(
                f"student embedding size {embedding_size} must be in 1..{word.shape[1] - 1}"
            )
        u, s, vt = np.linalg.svd(new_word.astype(np.float64), full_matrices=False)
        embeddings["word_embeddings"] = {
            "embedding": (u[:, :embedding_size] * s[:embedding_size]).astype(word.dtype)
        }
        embeddings["word_embeddings_projection"] = vt[:embedding_size].astype(word.dtype)
    intermediate_size = intermediate_size or config.intermediate_size
    if not 0 < intermediate_size <= config.intermediate_size:
        raise ValueError(
            f"student intermediate size {intermediate_size} must be in "
            f"1..{config.intermediate_size}"
        )
    encoder_layers = bert["encoder"]["layer"]
    chosen = [encoder_layers[str(i)] for i in layers]
    if intermediate_size < config.intermediate_size:
        chosen = [pruned_feed_forward(layer, intermediate_size) for layer in chosen]
    params = dict(
        bert,
        embeddings=embeddings,
        encoder={"layer": {str(k): layer for k, layer in enumerate(chosen)}},
    )
    student = BertConfig.from_dict(
        dict(
            config.to_dict(),
            num_layers=len(layers),
            vocab_size=rows,
            intermediate_size=intermediate_size,
            embedding_size=embedding_size,
        )
    )
    return student, tokenizer, {"bert": params}


def _lowercases(tokenizer: BertTokenizer) -> bool:
    probe = tokenizer.backend.normalizer
    return probe is not None and probe.normalize_str("A") == "a"
