"""The update rule: AdamW with masked decoupled weight decay and its schedules, the train state,
and the one train step (`make_train_step`) that every task jits.

The step's code does not know how many devices there are: `jaxbert.train.run` jits it over the
device mesh with the batch sharded on the `data` axis.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: number of updates applied
    params: Any
    opt_state: Any
    plateau: Any  # reduce_on_plateau state, or an empty tuple without the plateau schedule


def frozen_labels(params, frozen: tuple[str, ...]):
    """'frozen' for every parameter under a subtree named in `frozen` (a top-level name such as
    "bert", or a path such as "bert/embeddings/word_embeddings"), else 'train'."""
    prefixes = [tuple(name.split("/")) for name in frozen]

    def has(tree, path):
        return not path or (
            isinstance(tree, dict) and path[0] in tree and has(tree[path[0]], path[1:])
        )

    missing = [name for name, path in zip(frozen, prefixes) if not has(params, path)]
    if missing:
        raise ValueError(f"optim.freeze names {missing}, not among the parameters {list(params)}")

    def label(path, _):
        names = tuple(getattr(p, "key", str(p)) for p in path)
        return "frozen" if any(names[: len(q)] == q for q in prefixes) else "train"

    return jax.tree_util.tree_map_with_path(label, params)


def decay_mask(params):
    """True for weights that get weight decay: not biases, not LayerNorm parameters."""

    def decays(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        return names[-1] != "bias" and not any("LayerNorm" in n for n in names)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_schedule(optim, total_steps: int) -> optax.Schedule:
    """Linear warm-up over `warmup_fraction` of the steps, then linear/cosine decay or constant."""
    warmup = max(1, int(round(optim.warmup_fraction * total_steps)))
    decay_steps = max(1, total_steps - warmup)
    warm = optax.linear_schedule(0.0, optim.lr, warmup)
    if optim.schedule == "linear":
        after = optax.linear_schedule(optim.lr, 0.0, decay_steps)
    elif optim.schedule == "cosine":
        after = optax.cosine_decay_schedule(optim.lr, decay_steps)
    elif optim.schedule in ("constant", "plateau"):
        after = optax.constant_schedule(optim.lr)
    else:
        raise ValueError(
            f"unknown schedule {optim.schedule!r}; choose linear, cosine, constant or plateau"
        )
    return optax.join_schedules([warm, after], [warmup])


def make_optimizer(optim, total_steps: int):
    """AdamW with decoupled weight decay (masked), clipping; plus the plateau rule if chosen.

    The plateau rule (`optax.contrib.reduce_on_plateau`) is kept outside the AdamW chain: the
    loop feeds it the *evaluation* loss at each evaluation, and every step multiplies its updates
    by the current scale. Fed the noisy per-step loss it would cut the rate at random.
    """
    schedule = make_schedule(optim, total_steps)
    parts = []
    if optim.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.clip_norm))
    parts.append(
        optax.adamw(
            schedule,
            b1=optim.b1,
            b2=optim.b2,
            eps=optim.eps,
            weight_decay=optim.weight_decay,
            mask=decay_mask,
            mu_dtype=jnp.dtype(optim.moment_dtype),
        )
    )
    tx = optax.chain(*parts)
    frozen = tuple(name.strip() for name in optim.get("freeze", "").split(",") if name.strip())
    if frozen:
        # Frozen subtrees get no update at all (not even weight decay).
        tx = optax.multi_transform(
            {"train": tx, "frozen": optax.set_to_zero()}, partial(frozen_labels, frozen=frozen)
        )
    plateau = None
    if optim.schedule == "plateau":
        plateau = optax.contrib.reduce_on_plateau(
            factor=optim.plateau_factor,
            patience=optim.plateau_patience,
            min_scale=optim.plateau_min_scale,
        )
    return tx, plateau, schedule


def create_state(params, tx, plateau) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        plateau=plateau.init(params) if plateau is not None else (),
    )


def make_train_step(loss_fn: LossFn, tx, *, grad_accum: int = 1, use_plateau: bool = False):
    """Builds `train_step(state, batch, rng) -> (state, metrics)`.

    With `grad_accum > 1` the batch is split into that many micro-batches whose gradients are
    averaged before one update (same result as the full batch, a fraction of the activations).
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def compute_grads(params, batch, rng):
        if grad_accum == 1:
            (loss, metrics), grads = grad_fn(params, batch, rng)
            return loss, metrics, grads

        def split(x):
            return x.reshape((grad_accum, x.shape[0] // grad_accum) + x.shape[1:])

        micro_batches = jax.tree.map(split, batch)

        def body(carry, inputs):
            index, micro = inputs
            (loss, metrics), grads = grad_fn(params, micro, jax.random.fold_in(rng, index))
            carry = jax.tree.map(jnp.add, carry, (loss, metrics, grads))
            return carry, None

        zeros = jax.tree.map(
            jnp.zeros_like,
            jax.eval_shape(
                lambda: grad_fn(params, jax.tree.map(lambda x: x[0], micro_batches), rng)
            ),
        )
        (loss, metrics), grads = zeros
        (loss, metrics, grads), _ = jax.lax.scan(
            body, (loss, metrics, grads), (jnp.arange(grad_accum), micro_batches)
        )
        return jax.tree.map(lambda x: x / grad_accum, (loss, metrics, grads))

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        loss, metrics, grads = compute_grads(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        if use_plateau:
            updates = jax.tree.map(lambda u: u * state.plateau.scale, updates)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step
