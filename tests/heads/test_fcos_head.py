"""Tests for od_meta.heads.fcos_head and od_meta.heads.sapd_level_selection.

Tiny sizes: a 64x64 input with 3 levels of 8x8, 4x4 and 2x2 (strides 8, 16,
32), depth 16, 4 GroupNorm groups.
"""

# pylint: disable=protected-access

import numpy as np
import pytest
import tensorflow as tf

from od_meta.heads import box_predictor
from od_meta.heads import fcos_head
from od_meta.heads import sapd_level_selection

BOX = fcos_head.BOX_ENCODINGS
CLS = fcos_head.CLASS_PREDICTIONS_WITH_BACKGROUND
CTR = fcos_head.CENTERNESS
SIZES = (8, 4, 2)
# Level slices of the flattened outputs: 64, 16 and 4 locations.
SLICES = (slice(0, 64), slice(64, 80), slice(80, 84))


def _maps(batch=2, depth=16, sizes=SIZES):
  return [tf.random.normal([batch, s, s, depth], seed=i)
          for i, s in enumerate(sizes)]


def _head(**kwargs):
  args = dict(num_class_slots=3, num_levels=3, depth=16, group_norm_groups=4)
  args.update(kwargs)
  return fcos_head.FCOSHead(**args)


def _variables(layers):
  return [v for layer in layers for v in layer.trainable_variables]


def _tower_variables(tower):
  return _variables([layer for layers in tower for layer in layers])


class TestFCOSHead:

  def test_shapes_dtypes_and_positive_boxes(self):
    head = _head()
    out = head(_maps())
    assert set(out) == {BOX, CLS, CTR}
    assert out[BOX].shape == (2, 84, 4)
    assert out[CLS].shape == (2, 84, 3)
    assert out[CTR].shape == (2, 84, 1)
    for value in out.values():
      assert value.dtype == tf.float32
    assert np.all(out[BOX].numpy() > 0)
    assert head.num_class_slots == 3
    assert head.num_predictions_per_location_list == [1, 1, 1]

  def test_flattening_is_level_major_then_row_major(self):
    head = _head(num_class_slots=1, num_layers_before_predictor=0,
                 kernel_size=1, predict_centerness=False)
    # Map l has value 100 * l + 10 * y + x at (y, x) in every channel.
    maps = []
    for level, size in enumerate(SIZES):
      y, x = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
      values = (100.0 * level + 10.0 * y + x).astype(np.float32)
      maps.append(tf.constant(np.tile(values[None, :, :, None],
                                      [1, 1, 1, 16])))
    head(maps)
    kernel = np.zeros([1, 1, 16, 1], np.float32)
    kernel[0, 0, 0, 0] = 1.0
    head._class_head.set_weights([kernel, np.zeros(1)])
    logits = head(maps)[CLS].numpy()[0, :, 0]
    expected = np.concatenate([
        (100.0 * level + 10.0 * np.arange(size)[:, None] +
         np.arange(size)[None, :]).reshape(-1)
        for level, size in enumerate(SIZES)])
    np.testing.assert_allclose(logits, expected)

  def test_class_bias_gives_prior_probability(self):
    head = _head()
    out = head(_maps())
    bias = head._class_head.bias.numpy()
    np.testing.assert_allclose(bias, box_predictor.prior_probability_bias(
        0.01), rtol=1e-6)
    probs = tf.sigmoid(out[CLS]).numpy()
    assert probs.mean() == pytest.approx(0.01, abs=1e-3)
    assert np.all(np.abs(probs - 0.01) < 5e-3)

  def test_default_initializer_is_fcos_normal(self):
    head = _head()
    head(_maps())
    kernel = head._box_tower[0][0].kernel.numpy()
    assert head._hp.initializer == 'random_normal'
    assert kernel.std() == pytest.approx(0.01, rel=0.2)
    assert np.all(head._box_tower[0][0].bias.numpy() == 0)
    # A dict overrides only the keys it names.
    custom = _head(conv_hyperparams={'initializer_stddev': 0.05})
    assert custom._hp.initializer == 'random_normal'
    assert custom._hp.activation == 'relu'
    assert custom._hp.initializer_stddev == 0.05

  def test_per_level_scales(self):
    head = _head()
    maps = _maps()
    before = head(maps)[BOX].numpy()
    assert len(head.scales) == 3
    assert [float(s.numpy()) for s in head.scales] == [1.0, 1.0, 1.0]
    assert all(s.trainable for s in head.scales)
    head.scales[1].assign(2.0)
    after = head(maps)[BOX].numpy()
    np.testing.assert_array_equal(after[:, SLICES[0]], before[:, SLICES[0]])
    np.testing.assert_array_equal(after[:, SLICES[2]], before[:, SLICES[2]])
    # exp(2 x) = exp(x) ** 2.
    np.testing.assert_allclose(after[:, SLICES[1]], before[:, SLICES[1]] ** 2,
                               rtol=1e-5)
    assert not np.allclose(after[:, SLICES[1]], before[:, SLICES[1]])

  def test_no_scales(self):
    head = _head(use_scales=False)
    out = head(_maps())
    assert head.scales == []
    assert out[BOX].shape == (2, 84, 4)

  def test_exp_is_clipped_with_straight_through_gradient(self):
    head = _head(num_layers_before_predictor=1)
    maps = _maps()
    head(maps)
    box_head = head._box_head
    box_head.bias.assign(tf.fill([4], 50.0))
    with tf.GradientTape() as tape:
      boxes = head(maps)[BOX]
      loss = tf.reduce_sum(boxes)
    values = boxes.numpy()
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values, np.exp(fcos_head.MAX_LOG_DISTANCE),
                               rtol=1e-5)
    grad = tape.gradient(loss, box_head.bias).numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad > 0)

  @pytest.mark.parametrize('on_regression', [True, False])
  def test_centerness_branch(self, on_regression):
    head = _head(centerness_on_regression_branch=on_regression)
    maps = _maps()
    head(maps)
    box_vars = _tower_variables(head._box_tower)
    class_vars = _tower_variables(head._class_tower)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(head(maps)[CTR])
    box_grads, class_grads = tape.gradient(loss, [box_vars, class_vars])
    used, unused = ((box_grads, class_grads) if on_regression
                    else (class_grads, box_grads))
    assert all(g is None for g in unused)
    assert all(g is not None for g in used)
    assert any(np.any(g.numpy() != 0) for g in used)

  def test_towers_and_heads_all_get_gradients(self):
    head = _head()
    maps = _maps()
    with tf.GradientTape() as tape:
      out = head(maps, training=True)
      loss = sum(tf.reduce_sum(v) for v in out.values())
    grads = tape.gradient(loss, head.trainable_variables)
    assert len(grads) == 41
    assert all(g is not None for g in grads)

  def test_no_centerness(self):
    head = _head(predict_centerness=False)
    out = head(_maps())
    assert set(out) == {BOX, CLS}
    assert not any('centerness' in v.path for v in head.weights)

  def test_depthwise_without_group_norm(self):
    head = _head(use_depthwise=True, use_group_norm=False,
                 group_norm_groups=5)  # groups unused without GroupNorm.
    out = head(_maps())
    assert out[BOX].shape == (2, 84, 4)
    assert any(isinstance(layer, tf.keras.layers.SeparableConv2D)
               for layer in head._box_tower[0])

  def test_group_norm_divisibility_error(self):
    with pytest.raises(ValueError, match='group_norm_groups'):
      _head(group_norm_groups=5)

  def test_bad_constructor_values(self):
    with pytest.raises(ValueError, match='num_levels'):
      _head(num_levels=0)
    with pytest.raises(ValueError, match='num_class_slots'):
      _head(num_class_slots=0)

  def test_wrong_number_of_maps(self):
    head = _head()
    with pytest.raises(ValueError, match='num_levels'):
      head(_maps()[:2])
    head(_maps())
    with pytest.raises(ValueError, match='num_levels'):
      head(_maps() + _maps()[:1])

  def test_unequal_depths(self):
    head = _head()
    maps = _maps()
    maps[1] = tf.zeros([2, 4, 4, 8])
    with pytest.raises(ValueError, match='same static depth'):
      head(maps)

  def test_checkpoint_round_trip(self, tmp_path):
    maps = _maps()
    head = _head()
    out = head(maps)
    head.scales[2].assign(0.5)
    out = head(maps)
    # 2 towers x 4 layers x (kernel, bias, gamma, beta) + 3 heads x 2 + 3.
    assert len(head.weights) == 41
    path = tf.train.Checkpoint(m=head).save(str(tmp_path / 'ckpt'))
    names = [n for n, _ in tf.train.list_variables(path)
             if n.startswith('m/')]
    assert len(names) == 41
    other = _head()
    other(maps)
    tf.train.Checkpoint(m=other).restore(path).assert_consumed()
    for a, b in zip(head.weights, other.weights):  # noqa: B905
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    restored = other(maps)
    for key in out:
      np.testing.assert_allclose(restored[key].numpy(), out[key].numpy(),
                                 rtol=1e-6)

  def test_tf_function_with_dynamic_spatial_sizes(self):
    head = _head()
    maps = _maps()
    spec = [tf.TensorSpec([None, None, None, 16])] * 3
    fn = tf.function(lambda m: head(m), input_signature=[spec])
    out = fn(maps)
    np.testing.assert_allclose(out[BOX].numpy(), head(maps)[BOX].numpy(),
                               rtol=1e-5)


def _sapd(**kwargs):
  args = dict(num_levels=3, depth=16)
  args.update(kwargs)
  return sapd_level_selection.SoftLevelSelectionNetwork(**args)


class TestSoftLevelSelectionNetwork:

  def test_no_boxes(self):
    net = _sapd()
    logits = net(_maps(), tf.zeros([2, 0, 4]))
    assert logits.shape == (2, 0, 3)
    assert logits.dtype == tf.float32

  def test_three_boxes(self):
    net = _sapd()
    maps = _maps()
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5], [0.1, 0.2, 0.9, 0.6],
                          [0.4, 0.4, 0.45, 0.5]]] * 2)
    logits = net(maps, boxes)
    assert logits.shape == (2, 3, 3)
    assert logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    # Different boxes see different features.
    assert not np.allclose(logits[0, 0], logits[0, 1])
    # Box order is kept: one box alone gives its own row.
    single = net(maps, boxes[:, 1:2])
    np.testing.assert_allclose(single.numpy()[:, 0], logits.numpy()[:, 1],
                               rtol=1e-5, atol=1e-6)

  def test_no_gradient_into_boxes(self):
    net = _sapd()
    maps = _maps()
    boxes = tf.Variable([[[0.0, 0.0, 0.5, 0.5], [0.1, 0.2, 0.9, 0.6],
                          [0.4, 0.4, 0.45, 0.5]]] * 2)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(maps)
      loss = tf.reduce_sum(net(maps, boxes) ** 2)
    grad = tape.gradient(loss, boxes)
    assert grad is None or not np.any(tf.convert_to_tensor(grad).numpy())
    # The features and the weights do get gradients.
    assert all(g is not None for g in tape.gradient(loss, maps))
    assert all(g is not None
               for g in tape.gradient(loss, net.trainable_variables))

  def test_dynamic_number_of_boxes_in_tf_function(self):
    net = _sapd()
    maps = _maps()
    fn = tf.function(lambda b: net(maps, b),
                     input_signature=[tf.TensorSpec([None, None, 4])])
    assert fn(tf.zeros([2, 0, 4])).shape == (2, 0, 3)
    assert fn(tf.random.uniform([2, 5, 4])).shape == (2, 5, 3)

  def test_wrong_number_of_maps(self):
    with pytest.raises(ValueError, match='num_levels'):
      _sapd()(_maps()[:2], tf.zeros([2, 1, 4]))

  def test_checkpoint_round_trip(self, tmp_path):
    maps = _maps()
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5]]] * 2)
    net = _sapd()
    out = net(maps, boxes)
    # 2 convs x (kernel, bias) + dense (kernel, bias).
    assert len(net.weights) == 6
    path = tf.train.Checkpoint(m=net).save(str(tmp_path / 'ckpt'))
    assert len([n for n, _ in tf.train.list_variables(path)
                if n.startswith('m/')]) == 6
    other = _sapd()
    other(maps, boxes)
    tf.train.Checkpoint(m=other).restore(path).assert_consumed()
    np.testing.assert_allclose(other(maps, boxes).numpy(), out.numpy(),
                               rtol=1e-6)


class TestRoiAlign:
  """Half-pixel alignment, one sample per bin center, border clamp."""

  @staticmethod
  def _row_ramp(height, width=3):
    # Value at (y, x) = y: a bilinear sample returns its row coordinate.
    ramp = np.arange(height, dtype=np.float32)[None, :, None, None]
    return tf.constant(np.tile(ramp, [1, 1, width, 1]))

  def test_samples_at_bin_centers(self):
    # H = 4: box y in [0.25, 0.5] is cell 1 = [1, 2] in continuous
    # coordinates; 4 bin centers 1.125 ... 1.875 are rows 0.625 ... 1.375.
    crops = sapd_level_selection.roi_align(
        self._row_ramp(4), tf.constant([[[0.25, 0.0, 0.5, 1.0]]]), 4)
    assert crops.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(crops.numpy()[0, :, 0, 0],
                               [0.625, 0.875, 1.125, 1.375], atol=1e-6)

  def test_border_is_clamped_on_coarse_maps(self):
    # H = 2, whole-image box: bin centers at rows -0.25, 0.25, 0.75, 1.25;
    # those within half a cell outside read the border rows.
    crops = sapd_level_selection.roi_align(
        self._row_ramp(2), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), 4)
    np.testing.assert_allclose(crops.numpy()[0, :, 0, 0],
                               [0.0, 0.25, 0.75, 1.0], atol=1e-6)

  def test_batch_index_order(self):
    features = tf.stack([tf.fill([2, 2, 1], 1.0), tf.fill([2, 2, 1], 2.0)])
    boxes = tf.constant([[[0.0, 0.0, 1.0, 1.0]] * 2] * 2)
    crops = sapd_level_selection.roi_align(features, boxes, 2)
    np.testing.assert_allclose(crops.numpy()[:, 0, 0, 0], [1, 1, 2, 2])
