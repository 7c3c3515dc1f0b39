"""Puts Keras 3 layers kept in Python lists or dicts into TF checkpoints.

Keras 3 tracks `self.layers_list = [...]` (and dicts) with its own
`TrackedList` / `TrackedDict`, which `tf.train.Checkpoint` does not follow:
the variables of such layers would silently be left out of checkpoints (and
a restore would leave them at their initial values). Mixing
`CheckpointTrackedCollections` into a layer class, before the Keras base
class, adds every such collection that holds trackable objects to the
layer's checkpoint dependencies under its attribute name (as a TF
`ListWrapper` / `_DictWrapper`, whose children are named by index / key), so
object-based checkpoints save and restore them like TF-Keras 2 did.
"""

import weakref

import tensorflow as tf
from tensorflow.python.trackable import data_structures  # pylint: disable=g-direct-tensorflow-import

_SKIP = ('_inbound_nodes', '_outbound_nodes', '_losses', '_loss_ids',
         '_losses_override', '_build_shapes_dict', 'call_signature_parameters',
         '_call_context_args', '_call_has_context_arg')


def _holds_trackables(value):
  if isinstance(value, dict):
    return any(_holds_trackables(v) for v in value.values())
  if isinstance(value, (list, tuple)):
    return any(_holds_trackables(v) for v in value)
  return isinstance(value, tf.__internal__.tracking.Trackable)


def _plain(value):
  """Copies Keras tracked containers into plain Python ones, recursively."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def _signature(value):
  """Identity of a container's contents (to reuse its wrapper)."""
  if isinstance(value, dict):
    return tuple((str(k), _signature(v)) for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return tuple(_signature(v) for v in value)
  return id(value)


# layer -> {attribute: (signature, wrapper)}. The checkpoint machinery asks
# for a layer's children several times per save and matches them by object
# identity, so each collection must map to the same wrapper every time.
_WRAPPERS = weakref.WeakKeyDictionary()


class CheckpointTrackedCollections:
  """Mixin: checkpoint the layers held in list / dict attributes."""

  @property
  def _default_save_signature(self):
    """No SavedModel signature of its own (the exporter writes the model's).

    Keras 3 gives every `Model` a `serving_default` tf.function traced from
    its build shapes, and `tf.saved_model.save` traces and serializes it for
    every sub-model of the exported module: that fails for backbones whose
    call returns a stage dict with int keys ({4: C2, ...}; SavedModel
    structures need str keys) and costs one more trace for the others.
    """
    return None

  def _trackable_children(self, save_type='checkpoint', **kwargs):
    # Checkpoints: the collections Keras tracks but TF does not follow, and
    # tuples, which Keras 3 does not track at all (the weight-shared
    # predictor's towers were left out of every checkpoint and restored
    # with wrong values).
    # SavedModels: Keras 3 turns each tracked collection into a plain list /
    # dict (one level only) and drops tuples, so layers in nested lists (the
    # FPN's [conv, bn, act] blocks) or tuples were unreachable and exporting
    # failed with an "untracked resource" error; every collection attribute
    # holding layers gets the wrapper there.
    children = super()._trackable_children(save_type, **kwargs)
    names = list(getattr(self, '_tracked', ()))
    names += [k for k, v in vars(self).items()
              if isinstance(v, tuple) or (save_type != 'checkpoint' and
                                          isinstance(v, (list, dict)))
              if k not in names]
    for name in names:
      if name in _SKIP or (name in children and save_type == 'checkpoint'):
        continue
      value = getattr(self, name, None)
      if not (isinstance(value, (list, tuple, dict)) and
              _holds_trackables(value)):
        continue
      cache = _WRAPPERS.setdefault(self, {})
      signature = _signature(value)
      if name not in cache or cache[name][0] != signature:
        cache[name] = (signature,
                       data_structures.wrap_or_unwrap(_plain(value)))
      children[name] = cache[name][1]
    return children
