"""BERT in Flax linen: encoder, MLM and NSP heads.

Parameter names follow the Hugging Face Flax BERT layout (`bert/embeddings/word_embeddings`,
`bert/encoder/layer/0/attention/self/query`, `cls/predictions/transform/dense`, ...), so weights map
one-to-one onto Hugging Face checkpoints (see `jaxbert.hf`).

This file holds modules and jnp only: no tokenizer, strings, numpy, file I/O or printing.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

# Named sizes: (layers, hidden, heads). Intermediate size is 4 x hidden. The small sizes are the
# compact BERTs of Turc et al. (2019), "Well-Read Students Learn Better".
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4),
    "small": dict(num_layers=4, hidden_size=512, num_heads=8),
    "medium": dict(num_layers=8, hidden_size=512, num_heads=8),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12),
    "large": dict(num_layers=24, hidden_size=1024, num_heads=16),
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
ATTENTION_IMPLS = ("xla", "cudnn")


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
    """Rounds the embedding rows up to a multiple (64/128 keeps the vocab matmul on fast tiles)."""
    return -(-vocab_size // multiple) * multiple if multiple > 1 else vocab_size


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BERT encoder. `vocab_size` is the number of embedding rows."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: str = "float32"  # compute dtype; parameters are always float32
    attention_impl: str = "xla"  # "xla" everywhere, "cudnn" for fused attention on NVIDIA GPUs
    # Token embeddings of this width, mapped to hidden_size by a [embedding_size, hidden] matrix
    # (ALBERT's factorisation: a large vocabulary for few parameters); 0 = hidden_size, no map.
    embedding_size: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}"
            )
        if not 0 <= self.embedding_size < self.hidden_size:
            raise ValueError(
                f"embedding_size {self.embedding_size} must be 0 (no factorisation) or below "
                f"hidden_size {self.hidden_size}"
            )

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> BertConfig:
        """A named size (tiny, mini, small, medium, base, large) with optional field overrides."""
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {list(SIZES)}")
        fields = dict(SIZES[size])
        fields["intermediate_size"] = 4 * fields["hidden_size"]
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown BertConfig fields: {sorted(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]


def _dense(config: BertConfig, features: int, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=config.compute_dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.initializers.normal(config.initializer_range),
        name=name,
    )


def _layer_norm(config: BertConfig, name: str = "LayerNorm") -> nn.LayerNorm:
    # Flax computes LayerNorm statistics in float32 even for bfloat16 inputs.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps,
        dtype=config.compute_dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def _fmix32(x: jax.Array) -> jax.Array:
    # MurmurHash3's 32-bit finalizer: a bijection of uint32 in which each input bit flips each
    # output bit with probability close to 1/2.
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def dropout_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 in [0, 2**16) for each element of `shape`: two 16-bit lanes of one 32-bit hash of
    the element pair's flat index, keyed by two words drawn from `key`.

    A dropout mask needs bits that look independent, not a cryptographic generator. The keyed
    hash, fmix32(fmix32(index ^ k1) ^ k2), costs ~9 integer ops per element against ~30 for
    threefry2x32's 20 rounds even with four 16-bit lanes per block, so XLA recomputes it inside
    the kernels that apply the mask instead of writing the mask to memory and reading it back:
    for BERT-base at batch 256 x 128 on an H200 the modelled non-matmul time per step goes from
    12.4 to 10.3 ms (`scripts/benchmark.py hlo`). The keys are JAX's (flax gives each Dropout its
    own by folding in its path, the train step folds in the step), and the bits depend only on
    the key and the global shape, so masks are the same on any sharding.
    """
    *lead, last = shape or (1,)
    pairs = (*lead, -(-last // 2))
    if math.prod(pairs) >= 2**32:
        raise ValueError(f"dropout on {shape}: more than 2**32 hash counters")
    index = jnp.zeros(pairs, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(pairs))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, pairs, axis) * jnp.uint32(stride)
        stride *= pairs[axis]
    k1, k2 = jax.random.bits(key, (2,), jnp.uint32)  # two scalars per Dropout call
    bits = _fmix32(_fmix32(index ^ k1) ^ k2)
    lanes = jnp.concatenate([bits & jnp.uint32(0xFFFF), bits >> 16], axis=-1)
    return lanes[..., :last].reshape(shape)


class Dropout(nn.Module):
    """Inverted dropout whose keep mask compares 16 hashed bits per element (`dropout_bits`)
    with the keep probability, exact to 1/65536."""

    rate: float

    @nn.compact
    def __call__(self, x, *, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        keep = 1.0 - self.rate
        threshold = min(round(keep * 2**16), 2**16 - 1)
        bits = dropout_bits(self.make_rng("dropout"), x.shape)
        return jnp.where(bits < threshold, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


@jax.custom_vjp
def gelu(x):
    """The exact (erf) GELU, x * Phi(x), as BERT and Hugging Face compute it.

    jax.nn.gelu(approximate=False) goes through erfc, whose XLA expansion evaluates two
    polynomials, an exp and two divisions per element, and its autodiff saves two extra
    activation-sized arrays for the backward pass. Here the forward pass is one erf, only the
    input is saved, and the backward pass recomputes Phi and phi from it (as PyTorch does):
    for BERT-base at batch 256 x 128 on an H200 the GELU kernels' modelled traffic goes from 4.5
    to 2.5 ms per step (`scripts/benchmark.py hlo`). Math in float32 whatever the input dtype.
    """
    return _gelu_forward(x)[0]


def _gelu_forward(x):
    z = x.astype(jnp.float32)
    return (z * _normal_cdf(z)).astype(x.dtype), x


def _gelu_backward(x, grad):
    z = x.astype(jnp.float32)
    pdf = jnp.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
    return ((grad.astype(jnp.float32) * (_normal_cdf(z) + z * pdf)).astype(x.dtype),)


def _normal_cdf(z):
    return 0.5 * (1.0 + jax.lax.erf(z * (1.0 / math.sqrt(2.0))))


gelu.defvjp(_gelu_forward, _gelu_backward)


@flax.struct.dataclass
class EncoderOutput:
    hidden_states: jax.Array  # [batch, seq, hidden]
    pooled_output: jax.Array  # [batch, hidden], tanh(dense([CLS]))


@flax.struct.dataclass
class PretrainingOutput:
    mlm_logits: jax.Array  # [batch, max_predictions, vocab], float32
    nsp_logits: jax.Array  # [batch, 2], float32; class 0 = IsNext, 1 = NotNext


def _use_cudnn(config: BertConfig) -> bool:
    """cuDNN fused attention where it exists: NVIDIA GPUs, 16-bit compute (the fused kernel's
    dtypes). Elsewhere the same config falls back to the XLA implementation, so a GPU config
    still runs (slower) on CPU."""
    return (
        config.attention_impl == "cudnn"
        and jax.default_backend() == "gpu"
        and config.dtype in ("bfloat16", "float16")
    )


class BertEmbeddings(nn.Module):
    config: BertConfig

    def setup(self):
        config = self.config
        init = nn.initializers.normal(config.initializer_range)
        self.word_embeddings = nn.Embed(
            config.vocab_size,
            config.embedding_size or config.hidden_size,
            embedding_init=init,
            name="word_embeddings",
        )
        if config.embedding_size:
            self.word_projection = self.param(
                "word_embeddings_projection", init, (config.embedding_size, config.hidden_size)
            )
        self.position_embeddings = nn.Embed(
            config.max_position_embeddings,
            config.hidden_size,
            embedding_init=init,
            name="position_embeddings",
        )
        self.token_type_embeddings = nn.Embed(
            config.type_vocab_size,
            config.hidden_size,
            embedding_init=init,
            name="token_type_embeddings",
        )
        self.layer_norm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout)

    def __call__(self, input_ids, segment_ids, *, deterministic: bool, position_ids=None):
        """[batch, seq] ids -> [batch, seq, hidden]. `position_ids` [batch, seq]: each token's
        position, for rows that pack several texts (serving only); default 0..seq-1."""
        seq = input_ids.shape[1]
        # Positions are 0..seq-1 and segments a handful of ids: a slice and a select rather than
        # gathers, whose backward passes are scatter-adds of every token's gradient into a few
        # rows (a serial loop over the tokens on CPU; XLA:GPU rewrites them itself); the
        # gradients of a slice and a select are sums.
        if position_ids is None:
            positions = self.position_embeddings.embedding[None, :seq]
        else:
            positions = jnp.take(self.position_embeddings.embedding, position_ids, axis=0)
        types = self.token_type_embeddings.embedding
        segments = jnp.broadcast_to(types[0], (*segment_ids.shape, types.shape[1]))
        for t in range(1, types.shape[0]):
            segments = jnp.where(segment_ids[..., None] == t, types[t], segments)
        x = self._to_hidden(self.word_embeddings(input_ids)) + positions + segments
        x = self.layer_norm(x.astype(self.config.compute_dtype))
        return self.dropout(x, deterministic=deterministic)

    def _to_hidden(self, words):
        """Token embeddings [..., embedding_size] -> [..., hidden] through the factorisation's
        map; unchanged when the table is not factorised."""
        return words @ self.word_projection if self.config.embedding_size else words

    def word_table(self):
        """[vocab, hidden] float32: every token's embedding (the product, when factorised)."""
        return self._to_hidden(self.word_embeddings.embedding)


class BertSelfAttention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, *, deterministic: bool):
        """x [batch x seq, hidden], attention_mask [batch, seq] (1 real, 0 pad) or [batch, seq,
        seq] (which keys each query sees: rows that pack several texts) -> like x."""
        config = self.config
        batch, seq = attention_mask.shape[:2]
        shape = (batch, seq, config.num_heads, config.head_dim)
        query = _dense(config, config.hidden_size, "query")(x).reshape(shape)
        key = _dense(config, config.hidden_size, "key")(x).reshape(shape)
        value = _dense(config, config.hidden_size, "value")(x).reshape(shape)
        if attention_mask.ndim == 3:
            mask = attention_mask[:, None].astype(jnp.bool_)  # [batch, 1, seq, seq]
            context = jax.nn.dot_product_attention(
                query, key, value, mask=mask, implementation="xla"
            )
        elif _use_cudnn(config):
            # cuDNN's fused kernel takes padding as per-row lengths; our batches are right-padded.
            lengths = attention_mask.sum(axis=-1).astype(jnp.int32)
            context = jax.nn.dot_product_attention(
                query,
                key,
                value,
                query_seq_lengths=lengths,
                key_value_seq_lengths=lengths,
                implementation="cudnn",
            )
        else:
            mask = attention_mask[:, None, None, :].astype(jnp.bool_)  # [batch, 1, 1, seq]
            context = jax.nn.dot_product_attention(
                query, key, value, mask=mask, implementation="xla"
            )
        # jax.nn.dot_product_attention has no dropout on the attention probabilities (the fused
        # kernels cannot expose them); BERT's attention dropout is applied to the context instead.
        context = Dropout(config.attention_dropout)(context, deterministic=deterministic)
        return context.reshape(batch * seq, config.hidden_size)


class BertResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual): the `output` block after attention and FFN."""

    config: BertConfig

    @nn.compact
    def __call__(self, x, residual, *, deterministic: bool):
        config = self.config
        x = _dense(config, config.hidden_size, "dense")(x)
        x = Dropout(config.hidden_dropout)(x, deterministic=deterministic)
        return _layer_norm(config)(x + residual)


class BertAttention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, *, deterministic: bool):
        context = BertSelfAttention(self.config, name="self")(
            x, attention_mask, deterministic=deterministic
        )
        return BertResidualOutput(self.config, name="output")(
            context, x, deterministic=deterministic
        )


class BertIntermediate(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x):
        h = _dense(self.config, self.config.intermediate_size, "dense")(x)
        return gelu(h)


class BertLayer(nn.Module):
    """One post-LayerNorm transformer layer: self-attention, then a GELU feed-forward."""

    config: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, *, deterministic: bool):
        x = BertAttention(self.config, name="attention")(
            x, attention_mask, deterministic=deterministic
        )
        h = BertIntermediate(self.config, name="intermediate")(x)
        return BertResidualOutput(self.config, name="output")(h, x, deterministic=deterministic)


class BertLayerStack(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, *, deterministic: bool):
        for i in range(self.config.num_layers):
            x = BertLayer(self.config, name=str(i))(x, attention_mask, deterministic=deterministic)
        return x


class BertEncoder(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, attention_mask, *, deterministic: bool):
        """x [batch, seq, hidden] -> like x. The layers see the tokens as one [batch x seq,
        hidden] matrix (attention alone needs the sequences), so every dense layer, LayerNorm
        and their gradients work on 2-D arrays: with 3-D ones XLA:GPU chose transposed layouts
        ([seq, hidden, batch]) for the weight gradients and LayerNorm reductions and copied
        activations between layouts."""
        tokens = x.reshape(-1, x.shape[-1])
        tokens = BertLayerStack(self.config, name="layer")(
            tokens, attention_mask, deterministic=deterministic
        )
        return tokens.reshape(x.shape)


class BertPooler(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, hidden_states):
        """[batch, seq, hidden] -> tanh(dense(hidden at [CLS])) [batch, hidden]."""
        return jnp.tanh(_dense(self.config, self.config.hidden_size, "dense")(hidden_states[:, 0]))


class BertModel(nn.Module):
    """The encoder: embeddings, `num_layers` transformer layers and the tanh pooler."""

    config: BertConfig

    def setup(self):
        self.embeddings = BertEmbeddings(self.config)
        self.encoder = BertEncoder(self.config)
        self.pooler = BertPooler(self.config)

    def __call__(
        self,
        input_ids,
        segment_ids=None,
        attention_mask=None,
        *,
        deterministic: bool = True,
        position_ids=None,
    ) -> EncoderOutput:
        """input_ids, segment_ids, attention_mask: [batch, seq] int32. Rows packing several
        texts pass attention_mask [batch, seq, seq] and position_ids [batch, seq]."""
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        x = self.embeddings(
            input_ids, segment_ids, deterministic=deterministic, position_ids=position_ids
        )
        x = self.encoder(x, attention_mask, deterministic=deterministic)
        return EncoderOutput(hidden_states=x, pooled_output=self.pooler(x))

    def word_embedding_table(self):
        """[vocab, hidden] float32: the token embeddings, shared with the MLM decoder."""
        return self.embeddings.word_table()


class BertPredictionTransform(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x):
        x = gelu(_dense(self.config, self.config.hidden_size, "dense")(x))
        return _layer_norm(self.config)(x)


class BertMLMHead(nn.Module):
    """`cls/predictions`: transform, then the decoder tied to the token embeddings, plus a bias."""

    config: BertConfig

    @nn.compact
    def __call__(self, x, embedding_table):
        """x [batch, predictions, hidden], embedding_table [vocab, hidden] -> float32 logits."""
        x = BertPredictionTransform(self.config, name="transform")(x)
        bias = self.param("bias", nn.initializers.zeros, (self.config.vocab_size,))
        dtype = self.config.compute_dtype
        # Logits in the compute dtype, as under torch autocast: float32 logits would make the
        # backward pass's decoder matmuls float32 (tf32) and double the bytes of the largest
        # activation (batch x predictions x vocab). The loss upcasts before its softmax.
        logits = jnp.einsum("bph,vh->bpv", x, embedding_table.astype(dtype))
        return logits.astype(jnp.float32) + bias


class BertPretrainingHeads(nn.Module):
    """`cls`: the MLM head (`predictions`) and the NSP head (`seq_relationship`)."""

    config: BertConfig

    @nn.compact
    def __call__(self, at_masked, pooled_output, embedding_table):
        mlm_logits = BertMLMHead(self.config, name="predictions")(at_masked, embedding_table)
        nsp_logits = _dense(self.config, 2, "seq_relationship")(pooled_output)
        return mlm_logits, nsp_logits.astype(jnp.float32)


class BertForPreTraining(nn.Module):
    """BERT with its pretraining heads. The MLM head runs only at the masked positions."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config)
        self.cls = BertPretrainingHeads(self.config)

    def __call__(
        self,
        input_ids,
        segment_ids,
        attention_mask,
        masked_lm_positions,
        *,
        deterministic: bool = True,
    ) -> PretrainingOutput:
        """[batch, seq] inputs and masked_lm_positions [batch, max_predictions] -> logits."""
        encoded = self.bert(input_ids, segment_ids, attention_mask, deterministic=deterministic)
        at_masked = jnp.take_along_axis(
            encoded.hidden_states, masked_lm_positions[..., None].astype(jnp.int32), axis=1
        )  # [batch, max_predictions, hidden]
        mlm_logits, nsp_logits = self.cls(
            at_masked, encoded.pooled_output, self.bert.word_embedding_table()
        )
        return PretrainingOutput(mlm_logits=mlm_logits, nsp_logits=nsp_logits)
