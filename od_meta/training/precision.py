"""Mixed precision: Keras precision policies and dynamic loss scaling.

`train_config.mixed_precision: true` trains under Keras' `mixed_float16`
policy and `train_config.use_bfloat16: true` under `mixed_bfloat16`
(Micikevicius et al. 2018, "Mixed Precision Training"; the Keras mixed
precision guide):

* every layer built inside `policy_scope` computes in float16 / bfloat16 and
  keeps its variables (and so the checkpoints) in float32;
* the heads cast their final logits and box encodings to float32, so the
  losses, the box decoding, the target assignment and NMS run in float32 and
  an exported SavedModel's outputs are float32 (`DetectionModel.predict`'s
  contract, checked by tests/training/test_precision.py);
* float16 has a narrow exponent range, so its gradients are protected by
  dynamic loss scaling: `keras.optimizers.LossScaleOptimizer` multiplies the
  loss by the loss scale S before the backward pass, divides the gradients
  by S, skips the update of a step whose gradients are not finite (halving
  S), and doubles S after `dynamic_growth_steps` finite steps. bfloat16 has
  float32's exponent range and needs no loss scaling.

Components stay protocol-free: `policy_name` maps the two config booleans
to a Keras policy name, and the training loop owns the rest.
"""

import contextlib
from typing import Iterator

import keras
import tensorflow as tf

FLOAT32 = 'float32'
MIXED_FLOAT16 = 'mixed_float16'
MIXED_BFLOAT16 = 'mixed_bfloat16'
POLICIES = (FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16)

# Keras' defaults (2 ** 15, doubled after 2000 finite steps).
INITIAL_LOSS_SCALE = 2.0 ** 15
DYNAMIC_GROWTH_STEPS = 2000


def policy_name(mixed_precision: bool, use_bfloat16: bool) -> str:
  """The Keras policy name for the two train_config booleans.

  Args:
    mixed_precision: `train_config.mixed_precision` (float16 compute).
    use_bfloat16: `train_config.use_bfloat16` (bfloat16 compute).

  Returns:
    'float32', 'mixed_float16' or 'mixed_bfloat16'.

  Raises:
    ValueError: if both are set.
  """
  if mixed_precision and use_bfloat16:
    raise ValueError('train_config.mixed_precision and '
                     'train_config.use_bfloat16 are both true; set one '
                     '(float16 or bfloat16 compute)')
  if mixed_precision:
    return MIXED_FLOAT16
  if use_bfloat16:
    return MIXED_BFLOAT16
  return FLOAT32


def needs_loss_scaling(policy: str) -> bool:
  """True for float16 compute, whose gradients underflow without scaling."""
  return policy == MIXED_FLOAT16


@contextlib.contextmanager
def policy_scope(policy: str) -> Iterator[None]:
  """Sets Keras' global dtype policy for the layers built inside.

  Keras layers read the global policy when they are constructed, so the
  model (and the variables of its lazily built sublayers: build the
  variables inside the scope too) gets `policy`; the previous global policy
  is restored on exit, leaving other models in the process unchanged.

  Raises:
    ValueError: on a policy name not in `POLICIES`.
  """
  if policy not in POLICIES:
    raise ValueError(f'unknown precision policy {policy!r}; choose one of '
                     f'{", ".join(POLICIES)}')
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer, policy: str,
                   initial_scale: float = INITIAL_LOSS_SCALE,
                   dynamic_growth_steps: int = DYNAMIC_GROWTH_STEPS):
  """Wraps `optimizer` in a `LossScaleOptimizer` under float16, else returns it.

  The wrapper's `scale_loss` multiplies the loss by the current scale and
  its `apply_gradients` divides the gradients by it, skips the step (no
  variable changes, the inner optimizer's `iterations` does not advance)
  when any replica's gradient is NaN or Inf, and adapts the scale.
  """
  if not needs_loss_scaling(policy):
    return optimizer
  return keras.optimizers.LossScaleOptimizer(
      optimizer, initial_scale=initial_scale,
      dynamic_growth_steps=dynamic_growth_steps)


def inner_optimizer(optimizer):
  """The optimizer that updates the variables (unwraps loss scaling)."""
  return getattr(optimizer, 'inner_optimizer', optimizer)


def loss_scale(optimizer) -> float:
  """The current loss scale (1.0 without loss scaling)."""
  scale = getattr(optimizer, 'dynamic_scale', None)
  return 1.0 if scale is None else float(tf.convert_to_tensor(scale).numpy())


def compute_dtypes(model) -> dict:
  """{compute dtype: number of layers} over a model's Keras sublayers."""
  counts = {}
  for layer in _sublayers(model):
    dtype = layer.compute_dtype
    counts[dtype] = counts.get(dtype, 0) + 1
  return counts


def _sublayers(model):
  flatten = getattr(model, '_flatten_layers', None)
  if flatten is None:
    return []
  return list(flatten(include_self=False, recursive=True))
