"""Tests for od_meta.heads.box_predictor."""

import math

import numpy as np
import pytest
import tensorflow as tf

from od_meta.heads import box_predictor

BOX = box_predictor.BOX_ENCODINGS
CLS = box_predictor.CLASS_PREDICTIONS_WITH_BACKGROUND


def _maps(depths=(8, 16), sizes=((4, 4), (2, 2)), batch=2):
  return [tf.random.normal([batch, h, w, d], seed=i)
          for i, ((h, w), d) in enumerate(zip(sizes, depths))]


def _all_grads(layer, maps):
  with tf.GradientTape() as tape:
    out = layer(maps, training=True)
    loss = tf.reduce_sum(out[BOX] ** 2) + tf.reduce_sum(out[CLS] ** 2)
  return tape.gradient(loss, layer.trainable_variables)


def test_prior_probability_bias():
  # -log((1 - 0.01) / 0.01) = -log(99) = -4.59512 (focal loss, sec. 3.3).
  assert box_predictor.prior_probability_bias(0.01) == pytest.approx(
      -4.59512, abs=1e-5)
  with pytest.raises(ValueError, match='prior_probability'):
    box_predictor.prior_probability_bias(1.0)


class TestConvolutionalBoxPredictor:

  def test_shapes(self):
    predictor = box_predictor.ConvolutionalBoxPredictor(
        num_class_slots=11, num_predictions_per_location_list=[3, 2])
    out = predictor(_maps())
    # 4 * 4 * 3 + 2 * 2 * 2 = 48 + 8 = 56 anchors.
    assert out[BOX].shape == (2, 56, 4)
    assert out[CLS].shape == (2, 56, 11)
    assert out[BOX].dtype == tf.float32

  def test_anchor_order_is_map_y_x_anchor(self):
    predictor = box_predictor.ConvolutionalBoxPredictor(
        num_class_slots=1, num_predictions_per_location_list=[2, 1],
        kernel_size=1, box_code_size=1)
    # Map 0: 2x3, value v(y, x) = 10 * y + x; map 1: 1x1 with value 100.
    v0 = tf.constant([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], shape=[1, 2, 3, 1])
    v1 = tf.constant([[100.0]], shape=[1, 1, 1, 1])
    predictor([v0, v1])
    # Box head 1x1 kernels: anchor a of map 0 outputs (a + 1) * v, map 1 -v.
    predictor._box_heads[0][0].set_weights(  # pylint: disable=protected-access
        [np.array([[[[1.0, 2.0]]]]), np.zeros(2)])
    predictor._box_heads[1][0].set_weights(  # pylint: disable=protected-access
        [np.array([[[[-1.0]]]]), np.zeros(1)])
    out = predictor([v0, v1])[BOX].numpy()[0, :, 0]
    # Order (y, x, a): (0,0,a0)=0, (0,0,a1)=0, (0,1,a0)=1, (0,1,a1)=2,
    # (0,2)=2,4, (1,0)=10,20, (1,1)=11,22, (1,2)=12,24, then map 1: -100.
    np.testing.assert_allclose(
        out, [0, 0, 1, 2, 2, 4, 10, 20, 11, 22, 12, 24, -100])

  def test_class_bias_init_and_zero_input(self):
    bias = box_predictor.prior_probability_bias(0.01)
    predictor = box_predictor.ConvolutionalBoxPredictor(
        num_class_slots=3, num_predictions_per_location_list=[2],
        class_prediction_bias_init=bias)
    out = predictor([tf.zeros([1, 2, 2, 4])])
    # Zero input: the conv output is its bias.
    np.testing.assert_allclose(tf.sigmoid(out[CLS]).numpy(), 0.01, rtol=1e-5)
    np.testing.assert_allclose(out[BOX].numpy(), 0.0)

  @pytest.mark.parametrize('use_depthwise', [False, True])
  def test_gradients_reach_every_variable(self, use_depthwise):
    predictor = box_predictor.ConvolutionalBoxPredictor(
        num_class_slots=4, num_predictions_per_location_list=[3, 2],
        num_layers_before_predictor=1, use_depthwise=use_depthwise,
        use_dropout=True, dropout_keep_prob=0.5)
    grads = _all_grads(predictor, _maps())
    assert predictor.trainable_variables
    assert all(g is not None for g in grads)

  def test_graph_mode_dynamic_shapes(self):
    predictor = box_predictor.ConvolutionalBoxPredictor(
        num_class_slots=2, num_predictions_per_location_list=[3, 2])
    maps = _maps(batch=1, sizes=((3, 5), (2, 3)))
    eager = predictor(maps)
    fn = tf.function(lambda a, b: predictor([a, b]), input_signature=[
        tf.TensorSpec([None, None, None, 8]),
        tf.TensorSpec([None, None, None, 16])])
    out = fn(*maps)
    # 3 * 5 * 3 + 2 * 3 * 2 = 45 + 12 = 57.
    assert out[BOX].shape == (1, 57, 4)
    np.testing.assert_allclose(out[CLS], eager[CLS], rtol=1e-5, atol=1e-6)

  def test_errors(self):
    predictor = box_predictor.ConvolutionalBoxPredictor(
        num_class_slots=2, num_predictions_per_location_list=[3, 2])
    with pytest.raises(ValueError, match='feature maps'):
      predictor(_maps()[:1])
    with pytest.raises(ValueError, match='num_class_slots'):
      box_predictor.ConvolutionalBoxPredictor(
          num_class_slots=0, num_predictions_per_location_list=[1])
    with pytest.raises(ValueError, match='num_predictions_per_location_list'):
      box_predictor.ConvolutionalBoxPredictor(
          num_class_slots=2, num_predictions_per_location_list=[])
    with pytest.raises(ValueError, match='dropout_keep_prob'):
      box_predictor.ConvolutionalBoxPredictor(
          num_class_slots=2, num_predictions_per_location_list=[1],
          dropout_keep_prob=0.0)


class TestWeightSharedConvolutionalBoxPredictor:

  def _predictor(self, num_maps=2, **kwargs):
    defaults = dict(num_class_slots=3,
                    num_predictions_per_location_list=[2] * num_maps,
                    depth=8, num_layers_before_predictor=2)
    defaults.update(kwargs)
    return box_predictor.WeightSharedConvolutionalBoxPredictor(**defaults)

  def test_shapes(self):
    predictor = self._predictor()
    out = predictor(_maps(depths=(16, 16)))
    # (4 * 4 + 2 * 2) * 2 = 40 anchors.
    assert out[BOX].shape == (2, 40, 4)
    assert out[CLS].shape == (2, 40, 3)

  def test_default_prior_bias(self):
    predictor = box_predictor.WeightSharedConvolutionalBoxPredictor(
        num_class_slots=3, num_predictions_per_location_list=[2, 2],
        depth=8, num_layers_before_predictor=1)
    out = predictor([tf.zeros([1, 2, 2, 8]), tf.zeros([1, 1, 1, 8])])
    # Zero input -> tower conv 0 -> BN (inference) 0 -> ReLU6 0 -> the class
    # head outputs its bias -log(99); sigmoid(-log(99)) = 1 / 100 = 0.01.
    np.testing.assert_allclose(tf.sigmoid(out[CLS]).numpy(), 0.01, rtol=1e-5)
    assert out[CLS].numpy()[0, 0, 0] == pytest.approx(-math.log(99.0),
                                                      abs=1e-5)

  def test_weights_shared_across_levels(self):
    two, three = self._predictor(2), self._predictor(3)
    two(_maps(depths=(16, 16)))
    three(_maps(depths=(16, 16, 16), sizes=((4, 4), (2, 2), (1, 1))))
    kernels = lambda p: sorted(v.path.split('/', 1)[1]
                               for v in p.trainable_variables
                               if 'kernel' in v.path)
    # 2 box + 2 class tower convs + 2 heads, whatever the number of maps.
    assert kernels(two) == kernels(three)
    assert len(kernels(two)) == 6
    # The same map at two levels gives the same predictions (inference BN
    # has identical statistics at init).
    fmap = tf.random.normal([1, 3, 3, 16])
    out = two([fmap, fmap])
    n = 3 * 3 * 2
    np.testing.assert_allclose(out[BOX][:, :n], out[BOX][:, n:], rtol=1e-6)
    np.testing.assert_allclose(out[CLS][:, :n], out[CLS][:, n:], rtol=1e-6)

  @pytest.mark.parametrize('kwargs', [
      {}, {'share_prediction_tower': True}, {'use_depthwise': True},
      {'apply_batch_norm': False, 'use_dropout': True}])
  def test_gradients_reach_every_variable(self, kwargs):
    predictor = self._predictor(**kwargs)
    grads = _all_grads(predictor, _maps(depths=(16, 16)))
    assert predictor.trainable_variables
    assert all(g is not None for g in grads)

  def test_checkpoint_restores_the_towers(self, tmp_path):
    # The towers are held in tuples, which Keras 3 does not track: they were
    # missing from checkpoints and restored with wrong values.
    maps = _maps(depths=(16, 16))
    saved = self._predictor()
    saved(maps)
    for v in saved.trainable_variables:
      v.assign(v + tf.random.normal(v.shape, stddev=0.1))
    path = tf.train.Checkpoint(p=saved).save(str(tmp_path / 'ckpt'))
    names = [n for n, _ in tf.train.list_variables(path)]
    assert any('_box_tower' in n for n in names), names
    restored = self._predictor()
    restored(maps)
    tf.train.Checkpoint(p=restored).restore(path).assert_existing_objects_matched()
    for a, b in zip(saved.trainable_variables, restored.trainable_variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_allclose(saved(maps)[CLS], restored(maps)[CLS])

  def test_share_prediction_tower_has_no_class_tower(self):
    predictor = self._predictor(share_prediction_tower=True)
    predictor(_maps(depths=(16, 16)))
    assert not any('class_tower' in v.path for v in predictor.variables)

  def test_graph_mode(self):
    predictor = self._predictor()
    fn = tf.function(lambda a, b: predictor([a, b]), input_signature=[
        tf.TensorSpec([None, None, None, 16])] * 2)
    out = fn(tf.zeros([2, 5, 3, 16]), tf.zeros([2, 3, 2, 16]))
    # (5 * 3 + 3 * 2) * 2 = 42.
    assert out[BOX].shape == (2, 42, 4)

  def test_errors(self):
    with pytest.raises(ValueError, match='same static depth'):
      self._predictor()(_maps(depths=(8, 16)))
    with pytest.raises(ValueError, match='same number of anchors'):
      box_predictor.WeightSharedConvolutionalBoxPredictor(
          num_class_slots=3, num_predictions_per_location_list=[2, 3])
    with pytest.raises(ValueError, match='feature maps'):
      self._predictor(3)(_maps(depths=(16, 16)))
