"""Losses. Each returns a scalar mean and works on float32 logits / embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits, labels):
    """logits [..., classes], labels [...] int -> [...] float32 cross-entropy.

    The label's logit is picked by comparing the labels with the class indices, not gathered:
    the gradient of a gather is a scatter-add into a zero array the size of the logits (for MLM,
    batch x predictions x vocab), the gradient of a select is elementwise and fuses with the
    softmax's.
    """
    logits = logits.astype(jnp.float32)
    is_label = jnp.arange(logits.shape[-1]) == labels[..., None]
    label_logit = jnp.where(is_label, logits, 0.0).sum(axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - label_logit


def weighted_cross_entropy(logits, labels, weights):
    """logits [..., classes], labels [...] int, weights [...] -> (sum of loss, sum of weights)."""
    losses = softmax_cross_entropy(logits, labels)
    weights = weights.astype(jnp.float32)
    return (losses * weights).sum(), weights.sum()


def mlm_loss(mlm_logits, masked_lm_ids, masked_lm_weights):
    """Mean cross-entropy over real predictions.

    mlm_logits [batch, P, vocab]; masked_lm_ids, masked_lm_weights [batch, P].
    """
    total, count = weighted_cross_entropy(mlm_logits, masked_lm_ids, masked_lm_weights)
    return total / jnp.maximum(count, 1.0)


def nsp_loss(nsp_logits, next_sentence_labels):
    """nsp_logits [batch, 2], labels [batch] (0 IsNext, 1 NotNext)."""
    return softmax_cross_entropy(nsp_logits, next_sentence_labels).mean()


def nli_softmax_loss(logits, labels, weights):
    """SBERT's classification objective: logits [batch, classes], labels/weights [batch]."""
    total, count = weighted_cross_entropy(logits, labels, weights)
    return total / jnp.maximum(count, 1.0)


def cosine_similarity(u, v, eps: float = 1e-9):
    """Row-wise cosine of [batch, hidden] pairs -> [batch]."""
    u = u.astype(jnp.float32)
    v = v.astype(jnp.float32)
    norms = jnp.maximum(jnp.linalg.norm(u, axis=-1) * jnp.linalg.norm(v, axis=-1), eps)
    return (u * v).sum(-1) / norms


def multiple_negatives_ranking_loss(
    anchors, positives, weights, hard_negatives=None, hard_negative_mask=None, scale: float = 20.0
):
    """In-batch negatives ranking loss (Henderson et al. 2017; sentence-transformers' MNRL).

    anchors, positives [batch, hidden]; each anchor must pick its own positive among all positives
    of the batch (and all hard negatives [batch, hidden] where hard_negative_mask [batch] is 1).
    Padding rows (weights 0) are neither scored nor offered as candidates.
    """

    def unit(x):
        x = x.astype(jnp.float32)
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-9)

    anchors, positives = unit(anchors), unit(positives)
    candidates = positives
    candidate_mask = weights > 0
    if hard_negatives is not None:
        candidates = jnp.concatenate([positives, unit(hard_negatives)], axis=0)
        negative_mask = candidate_mask if hard_negative_mask is None else hard_negative_mask > 0
        candidate_mask = jnp.concatenate([candidate_mask, negative_mask & (weights > 0)])
    scores = scale * anchors @ candidates.T  # [batch, candidates]
    scores = jnp.where(candidate_mask[None, :], scores, -1e9)
    labels = jnp.arange(anchors.shape[0])
    total, count = weighted_cross_entropy(scores, labels, weights)
    return total / jnp.maximum(count, 1.0)


def cosine_regression_loss(u, v, scores, weights):
    """MSE between cos(u, v) and gold similarity scores already scaled to [0, 1]."""
    err = jnp.square(cosine_similarity(u, v) - scores.astype(jnp.float32))
    weights = weights.astype(jnp.float32)
    return (err * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def accuracy_counts(logits, labels, weights):
    """(number correct, number counted) for logits [..., classes] and labels/weights [...].

    Correct means the label's logit beats every other class's (a tie counts as wrong). This is
    two plain reductions; argmax is a (value, index) reduction, which over a 30k vocabulary took
    a fifth of the kernel time of a tiny pretraining step (batch 8 x 32) on CPU.
    """
    classes = jnp.arange(logits.shape[-1])
    is_label = classes == labels[..., None]
    label_logit = jnp.where(is_label, logits, -jnp.inf).max(axis=-1)
    best_other = jnp.where(is_label, -jnp.inf, logits).max(axis=-1)
    correct = (label_logit > best_other).astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    return (correct * weights).sum(), weights.sum()


def cosent_loss(u, v, scores, weights, scale: float = 20.0):
    """CoSENT (Su 2022; sentence-transformers' CoSENTLoss): a ranking loss on cosines.

    u, v [batch, hidden], gold scores / weights [batch]. For every two pairs i, j of the batch
    with score_i > score_j the loss asks cos_i > cos_j:
    log(1 + sum over such (i, j) of exp(scale * (cos_j - cos_i))). Only the order of the
    similarities matters, which is what Spearman correlation measures; a regression of cosines
    on scores (MSE) also asks for their scale.
    """
    cos = scale * cosine_similarity(u, v)  # [batch]
    real = weights > 0
    scores = scores.astype(jnp.float32)
    ordered = (scores[:, None] > scores[None, :]) & real[:, None] & real[None, :]  # [i, j]
    differences = jnp.where(ordered, cos[None, :] - cos[:, None], -1e9)
    # log(1 + sum exp(x)) = logsumexp over [0, x...]; an empty set of pairs gives log(1) = 0.
    return jax.nn.logsumexp(jnp.concatenate([jnp.zeros(1), differences.ravel()]))


def distillation_loss(student, teacher, weights, similarity_weight: float = 0.0):
    """Embedding distillation: mean squared error between the student's embeddings and the
    teacher's (student [batch, dim] already projected to the teacher's width, teacher
    [batch, dim]), as in Reimers & Gurevych (2020); with `similarity_weight` > 0 also the MSE
    between the two in-batch cosine-similarity matrices [batch, batch] (real rows only), which
    asks the student to keep the teacher's geometry rather than only its coordinates.
    Returns (loss, embedding MSE, similarity-matrix MSE)."""
    student = student.astype(jnp.float32)
    teacher = teacher.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    count = jnp.maximum(weights.sum(), 1.0)
    embedding_mse = (jnp.square(student - teacher).mean(-1) * weights).sum() / count

    def cosines(x):
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
        return x @ x.T

    pair_weights = weights[:, None] * weights[None, :]
    similarity_mse = (jnp.square(cosines(student) - cosines(teacher)) * pair_weights).sum() / (
        jnp.maximum(pair_weights.sum(), 1.0)
    )
    return embedding_mse + similarity_weight * similarity_mse, embedding_mse, similarity_mse
