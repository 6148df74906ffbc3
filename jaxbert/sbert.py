"""Sentence-BERT: pooled sentence embeddings and the siamese NLI classifier.

Each sentence is encoded on its own, so its embedding never depends on its partner. The encoder's
parameters live under `bert`, the same subtree as in `BertForPreTraining`, so a pretraining run's
encoder drops in unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbert.model import BertConfig, BertModel

POOLINGS = ("mean", "cls", "max")
PAIR_FEATURES = ("u", "v", "|u-v|", "u*v")


def pool(hidden_states: jax.Array, attention_mask: jax.Array, mode: str = "mean") -> jax.Array:
    """hidden_states [batch, seq, hidden], attention_mask [batch, seq] -> float32 [batch, hidden].

    Padding never contributes: mean and max look only at real tokens.
    """
    hidden = hidden_states.astype(jnp.float32)
    mask = attention_mask.astype(jnp.float32)[..., None]  # [batch, seq, 1]
    if mode == "mean":
        # The same clamp as sentence-transformers, so an all-padding row gives zeros, not NaN.
        return (hidden * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return jnp.where(mask > 0, hidden, -1e9).max(axis=1)
    raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLINGS}")


def packed_positions_and_mask(texts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """texts [batch, seq] int32, which text of its row each token belongs to (0: padding,
    1, 2, ...: the row's first, second, ... text) -> position ids [batch, seq] counting from 0
    in each text, and the attention mask [batch, seq, seq]: a token sees its own text only. So
    a row packing several texts encodes each as if it were alone."""
    same = texts[:, :, None] == texts[:, None, :]
    earlier = jnp.tril(jnp.ones((texts.shape[1], texts.shape[1]), jnp.bool_))
    positions = jnp.sum(same & earlier, axis=-1) - 1
    return positions.astype(jnp.int32), same & (texts[:, None, :] > 0)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def pair_features(u: jax.Array, v: jax.Array, features: tuple[str, ...]) -> jax.Array:
    """Concatenates the named features of two embeddings [batch, hidden] -> [batch, k * hidden]."""
    table = {"u": u, "v": v, "|u-v|": jnp.abs(u - v), "u*v": u * v}
    unknown = [f for f in features if f not in table]
    if unknown or not features:
        raise ValueError(f"unknown pair features {unknown}; choose from {PAIR_FEATURES}")
    return jnp.concatenate([table[f] for f in features], axis=-1)


class SentenceBert(nn.Module):
    """BERT encoder + pooling (+ a linear projection) (+ L2 normalisation), and a softmax head
    over pair features.

    projection_dim > 0 adds a linear map of the pooled embedding to that width (a student
    distilled from a teacher of another width). head_hidden > 0 makes the NLI head a two-layer
    MLP (InferSent's classifier) instead of one linear layer.
    """

    config: BertConfig
    pooling: str = "mean"
    normalize: bool = False
    num_labels: int = 3
    features: tuple[str, ...] = ("u", "v", "|u-v|")
    projection_dim: int = 0
    head_hidden: int = 0

    def setup(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {POOLINGS}")
        self.bert = BertModel(self.config)
        init = nn.initializers.normal(self.config.initializer_range)
        if self.projection_dim:
            self.projection = nn.Dense(self.projection_dim, kernel_init=init, name="projection")
        if self.head_hidden:
            self.classifier_hidden = nn.Dense(
                self.head_hidden, kernel_init=init, name="classifier_hidden"
            )
        self.classifier = nn.Dense(
            self.num_labels,
            kernel_init=init,
            name="classifier",
        )

    def encode(self, input_ids, attention_mask, *, deterministic: bool = True) -> jax.Array:
        """input_ids, attention_mask [batch, seq] -> float32 embeddings [batch, hidden]."""
        encoded = self.bert(input_ids, None, attention_mask, deterministic=deterministic)
        return self._embedding(pool(encoded.hidden_states, attention_mask, self.pooling))

    def encode_packed(self, input_ids, texts, *, texts_per_row: int = 2) -> jax.Array:
        """Rows that pack several texts: input_ids [batch, seq] and texts [batch, seq] (0:
        padding, k: the row's k-th text; `packed_positions_and_mask`) -> float32 embeddings
        [batch, texts_per_row, hidden], each text's as `encode` gives it alone (an absent
        text's row: the embedding of nothing, zeros before any projection)."""
        positions, mask = packed_positions_and_mask(texts)
        encoded = self.bert(input_ids, None, mask, position_ids=positions)
        pooled = []
        for k in range(1, texts_per_row + 1):
            own = texts == k
            if self.pooling == "cls":  # the text's first token
                pooled.append(pool(encoded.hidden_states, own & (positions == 0), "mean"))
            else:
                pooled.append(pool(encoded.hidden_states, own, self.pooling))
        return self._embedding(jnp.stack(pooled, axis=1))

    def _embedding(self, embeddings: jax.Array) -> jax.Array:
        """Pooled [..., hidden] -> the sentence embedding: projected, normalised if set."""
        if self.projection_dim:
            embeddings = self.projection(embeddings).astype(jnp.float32)
        return l2_normalize(embeddings) if self.normalize else embeddings

    def classify(self, u: jax.Array, v: jax.Array) -> jax.Array:
        """Embeddings u, v [batch, hidden] -> float32 logits [batch, num_labels]."""
        x = pair_features(u, v, self.features)
        if self.head_hidden:
            x = jnp.tanh(self.classifier_hidden(x))
        return self.classifier(x).astype(jnp.float32)

    def __call__(self, input_ids, attention_mask, *, deterministic: bool = True):
        """Initialises every parameter; returns embeddings [batch, hidden] and self-pair logits."""
        u = self.encode(input_ids, attention_mask, deterministic=deterministic)
        return u, self.classify(u, u)
