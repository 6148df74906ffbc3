"""Token embeddings from co-occurrence statistics, to start a budget pretraining run with.

A masked LM given a few million tokens learns little about what words mean (from BERT's random
embeddings the budget recipe's 1,200 steps ended at a mean-pooled STS-B dev of 54; from these
vectors at 68), while counting which tokens occur near which over the whole corpus takes seconds
and captures much of it: positive pointwise mutual information (PPMI, context counts smoothed to
the power 0.75 as in word2vec), factorised by a truncated SVD (Levy, Goldberg & Dagan 2015,
"Improving distributional similarity with lessons learned from word embeddings"). `pretrain.py`
puts these vectors in the token embedding table when `config.model.embedding_init =
"cooccurrence"`; the transformer above them starts random.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

WINDOW = 5  # tokens each side; a co-occurrence at distance d counts 1/d (as GloVe weights it)
MAX_TOKENS = 100_000_000  # counted from the corpus' start: enough for a 30k vocabulary's counts
CONTEXT_SMOOTHING = 0.75


def cooccurrence_counts(tokens: np.ndarray, vocab_size: int, window: int = WINDOW) -> sp.csr_matrix:
    """Symmetric [vocab, vocab] float32 counts of token pairs within `window` positions of each
    other, weighted 1/distance. `tokens` is one id stream (sentences back to back: pairs across a
    sentence boundary are a small fraction of the counts and are kept)."""
    tokens = np.asarray(tokens).astype(np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}); got {tokens.min()}..{tokens.max()}"
        )
    counts = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float32)
    for distance in range(1, window + 1):
        pairs, n = np.unique(
            tokens[:-distance] * vocab_size + tokens[distance:], return_counts=True
        )
        ahead = sp.csr_matrix(
            (n.astype(np.float32) / distance, (pairs // vocab_size, pairs % vocab_size)),
            shape=(vocab_size, vocab_size),
        )
        counts = counts + ahead + ahead.T
    return counts


def ppmi(counts: sp.spmatrix) -> sp.csr_matrix:
    """max(0, log p(w, c) / (p(w) p_0.75(c))): the positive PMI with smoothed context counts
    (rare contexts otherwise get the largest PMIs)."""
    counts = sp.coo_matrix(counts)
    totals = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
    context = totals**CONTEXT_SMOOTHING
    pmi = np.log(
        counts.data.astype(np.float64) * context.sum() / (totals[counts.row] * context[counts.col])
    )
    keep = pmi > 0
    return sp.csr_matrix(
        (pmi[keep].astype(np.float32), (counts.row[keep], counts.col[keep])), shape=counts.shape
    )


def truncated_svd(matrix: sp.spmatrix, rank: int, seed: int, power_iterations: int = 4):
    """(U, S) of the top `rank` singular triplets, by randomised range finding with power
    iterations (Halko, Martinsson & Tropp 2011): a few sparse-dense products, seeded."""
    rng = np.random.default_rng(seed)
    sample = min(rank + 16, min(matrix.shape))
    q, _ = np.linalg.qr(matrix @ rng.standard_normal((matrix.shape[1], sample)).astype(np.float32))
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(matrix.T @ q)
        q, _ = np.linalg.qr(matrix @ q)
    u, s, _ = np.linalg.svd((matrix.T @ q).T, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank]


def cooccurrence_embeddings(
    tokens: np.ndarray, vocab_size: int, dim: int, row_norm: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """[vocab, dim] float32 PPMI-SVD vectors (U sqrt(S)), every row scaled to `row_norm`, and a
    [vocab] bool mask of the tokens the corpus gave a vector (a token seen in no pair has none;
    the caller keeps its random row)."""
    if dim > vocab_size:
        raise ValueError(
            f"cannot factorise a {vocab_size}-token vocabulary into {dim} dimensions: use a larger "
            "vocabulary or model.embedding_init=normal"
        )
    start = time.perf_counter()
    tokens = np.asarray(tokens[:MAX_TOKENS])
    matrix = ppmi(cooccurrence_counts(tokens, vocab_size))
    u, s = truncated_svd(matrix, dim, seed)
    vectors = u * np.sqrt(s)
    norms = np.linalg.norm(vectors, axis=1)
    found = norms > 1e-8 * max(float(norms.max(initial=0.0)), 1e-30)
    vectors[found] *= row_norm / norms[found, None]
    vectors[~found] = 0.0
    log.info(
        "co-occurrence embeddings: %d tokens counted, %d of %d vocabulary rows, %d dims, %.1f s",
        tokens.size,
        int(found.sum()),
        vocab_size,
        dim,
        time.perf_counter() - start,
    )
    return vectors.astype(np.float32), found
