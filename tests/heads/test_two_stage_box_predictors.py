"""Tests for od_meta.heads.two_stage_box_predictors."""

import numpy as np
import pytest
import tensorflow as tf

from od_meta.anchor_generators import grid_anchor_generator
from od_meta.feature_extractors import conv_hyperparams
from od_meta.heads import two_stage_box_predictors as predictors

BOX = predictors.BOX_ENCODINGS
CLS = predictors.CLASS_PREDICTIONS_WITH_BACKGROUND
OBJ = predictors.OBJECTNESS_PREDICTIONS_WITH_BACKGROUND

# Identity-friendly hyperparams for golden tests: no BN, no activation.
LINEAR = conv_hyperparams.ConvHyperparams(
    use_batch_norm=False, activation='linear', l2_weight_decay=0.0)


def _ramp(height, width, offset=0.0):
  """[1, H, W, 1] map with value 10 * y + x + offset at (y, x)."""
  y, x = np.mgrid[0:height, 0:width]
  return tf.constant((10.0 * y + x + offset)[None, :, :, None], tf.float32)


def _grads(layer, loss_fn):
  with tf.GradientTape() as tape:
    loss = loss_fn()
  return tape.gradient(loss, layer.trainable_variables)


class TestRPNBoxPredictor:

  def test_shapes_and_variables(self):
    rpn = predictors.RPNBoxPredictor(3, depth=8)
    out = rpn(tf.random.normal([2, 4, 5, 6], seed=1), training=False)
    # 4 * 5 locations * 3 anchors = 60.
    assert out[BOX].shape == (2, 60, 4)
    assert out[OBJ].shape == (2, 60, 2)
    assert out[BOX].dtype == tf.float32 and out[OBJ].dtype == tf.float32
    # Default hyperparams: BN -> shared conv kernel without bias, gamma and
    # beta; box and objectness 1x1 convs with bias. 3x3x6x8 shared kernel.
    names = sorted(v.path.split('/')[-2] + '/' + v.name
                   for v in rpn.trainable_variables)
    assert names == ['rpn_box_encoding/bias', 'rpn_box_encoding/kernel',
                     'rpn_objectness/bias', 'rpn_objectness/kernel',
                     'rpn_shared_bn/beta', 'rpn_shared_bn/gamma',
                     'rpn_shared_conv/kernel']
    shared = [v for v in rpn.trainable_variables
              if v.path.endswith('rpn_shared_conv/kernel')][0]
    assert tuple(shared.shape) == (3, 3, 6, 8)

  def test_atrous_keeps_spatial_size(self):
    rpn = predictors.RPNBoxPredictor(2, depth=4, kernel_size=3, atrous_rate=2,
                                     conv_hyperparams=LINEAR)
    out = rpn(tf.random.normal([1, 6, 6, 3], seed=2))
    assert out[BOX].shape == (1, 6 * 6 * 2, 4)
    shared = rpn._shared_layers[0]  # pylint: disable=protected-access
    assert tuple(shared.dilation_rate) == (2, 2)

  def test_flatten_order_matches_grid_anchor_generator(self):
    # 2x2 map, A = 3 anchors (3 scales, 1 aspect ratio). Linear 1x1 shared
    # conv of depth 1 with weight 1 passes v(y, x) = 10 y + x; the box conv
    # (weights 1) adds bias 1000 a + 100 c to output channel a * 4 + c, the
    # objectness conv bias 1000 a + 100 c to channel a * 2 + c. So row k,
    # column c must be v(y, x) + 1000 a + 100 c for the anchor (y, x, a) of
    # row k of the anchor generator.
    rpn = predictors.RPNBoxPredictor(3, depth=1, kernel_size=1,
                                     conv_hyperparams=LINEAR)
    feature_map = _ramp(2, 2)
    rpn(feature_map)
    rpn._shared_layers[0].set_weights(  # pylint: disable=protected-access
        [np.ones([1, 1, 1, 1]), np.zeros([1])])
    box_bias = [1000.0 * a + 100.0 * c for a in range(3) for c in range(4)]
    obj_bias = [1000.0 * a + 100.0 * c for a in range(3) for c in range(2)]
    rpn._box_conv.set_weights(  # pylint: disable=protected-access
        [np.ones([1, 1, 1, 12]), np.array(box_bias)])
    rpn._objectness_conv.set_weights(  # pylint: disable=protected-access
        [np.ones([1, 1, 1, 6]), np.array(obj_bias)])
    out = rpn(feature_map)

    generator = grid_anchor_generator.GridAnchorGenerator(
        scales=(0.5, 1.0, 2.0), aspect_ratios=(1.0,),
        base_anchor_size=(256, 256), anchor_stride=(16, 16),
        anchor_offset=(8, 8))
    anchors = generator.generate([(2, 2)])[0].get().numpy()
    assert anchors.shape == (12, 4)
    for k, (ymin, xmin, ymax, xmax) in enumerate(anchors):
      y = int(round(((ymin + ymax) / 2 - 8) / 16))
      x = int(round(((xmin + xmax) / 2 - 8) / 16))
      a = {128: 0, 256: 1, 512: 2}[int(round(ymax - ymin))]
      v = 10 * y + x
      np.testing.assert_allclose(out[BOX][0, k],
                                 [v + 1000 * a + 100 * c for c in range(4)])
      np.testing.assert_allclose(out[OBJ][0, k],
                                 [v + 1000 * a + 100 * c for c in range(2)])

  def test_gradients_and_tf_function(self):
    rpn = predictors.RPNBoxPredictor(3, depth=4)
    fn = tf.function(lambda f: rpn(f, training=True), input_signature=[
        tf.TensorSpec([None, None, None, 2], tf.float32)])
    feature_map = tf.random.normal([2, 3, 4, 2], seed=3)
    out = fn(feature_map)
    assert out[BOX].shape == (2, 36, 4)
    assert out[OBJ].shape == (2, 36, 2)
    grads = _grads(rpn, lambda: tf.reduce_sum(fn(feature_map)[BOX] ** 2) +
                   tf.reduce_sum(fn(feature_map)[OBJ] ** 2))
    assert all(g is not None for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)
    assert all(v.trainable for v in rpn.trainable_variables)

  def test_checkpoint_round_trip(self, tmp_path):
    rpn = predictors.RPNBoxPredictor(2, depth=4)
    feature_map = tf.random.normal([1, 3, 3, 2], seed=4)
    before = rpn(feature_map)[BOX].numpy()
    path = tf.train.Checkpoint(model=rpn).save(str(tmp_path / 'ckpt'))
    for v in rpn.weights:
      v.assign(tf.zeros_like(v))
    tf.train.Checkpoint(model=rpn).restore(path).assert_consumed()
    np.testing.assert_allclose(rpn(feature_map)[BOX], before)

  def test_errors(self):
    with pytest.raises(ValueError, match='num_anchors_per_location'):
      predictors.RPNBoxPredictor(0)
    with pytest.raises(ValueError, match='atrous_rate'):
      predictors.RPNBoxPredictor(3, atrous_rate=0)
    rpn = predictors.RPNBoxPredictor(3, depth=4)
    with pytest.raises(ValueError, match='feature_map'):
      rpn(tf.zeros([4, 4, 2]))


class TestMaskRCNNBoxPredictor:

  def test_shapes(self):
    head = predictors.MaskRCNNBoxPredictor(4)
    features = tf.random.normal([5, 3, 3, 8], seed=5)
    out = head(features, training=False)
    assert out[BOX].shape == (5, 4, 4)
    assert out[CLS].shape == (5, 5)
    assert out[BOX].dtype == tf.float32 and out[CLS].dtype == tf.float32
    shared = predictors.MaskRCNNBoxPredictor(
        4, share_box_across_classes=True, box_code_size=6)
    out = shared(features)
    assert out[BOX].shape == (5, 1, 6)
    assert out[CLS].shape == (5, 5)
    # Empty proposals.
    out = head(tf.zeros([0, 3, 3, 8]))
    assert out[BOX].shape == (0, 4, 4) and out[CLS].shape == (0, 5)

  def test_golden_pool_then_dense(self):
    # Features [1, 2, 2, 2]: channel 0 = 1, 2, 3, 4 (mean 2.5), channel 1 =
    # 10 everywhere (mean 10). Class dense W = [[1, 0, 2], [0, 1, 0]],
    # b = [0, 1, 0]: logits = [2.5, 10 + 1, 5] = [2.5, 11, 5].
    head = predictors.MaskRCNNBoxPredictor(2, fc_hyperparams=LINEAR,
                                           share_box_across_classes=True,
                                           box_code_size=2)
    features = tf.constant([[[[1.0, 10.0], [2.0, 10.0]],
                             [[3.0, 10.0], [4.0, 10.0]]]])
    head(features)
    head._class_dense.set_weights(  # pylint: disable=protected-access
        [np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]),
         np.array([0.0, 1.0, 0.0])])
    # Box dense: [2.5, 10] @ [[1, -1], [0.1, 0]] = [3.5, -2.5].
    head._box_dense.set_weights(  # pylint: disable=protected-access
        [np.array([[1.0, -1.0], [0.1, 0.0]]), np.zeros(2)])
    out = head(features)
    np.testing.assert_allclose(out[CLS], [[2.5, 11.0, 5.0]], rtol=1e-6)
    np.testing.assert_allclose(out[BOX], [[[3.5, -2.5]]], rtol=1e-6)

  def test_dropout_only_in_training(self):
    head = predictors.MaskRCNNBoxPredictor(
        3, use_dropout=True, dropout_keep_probability=0.5)
    features = tf.random.normal([4, 2, 2, 16], seed=6)
    infer_1 = head(features, training=False)
    infer_2 = head(features, training=False)
    train_1 = head(features, training=True)
    train_2 = head(features, training=True)
    for key in (BOX, CLS):
      np.testing.assert_allclose(infer_1[key], infer_2[key])
      assert not np.allclose(train_1[key], train_2[key])
      assert not np.allclose(train_1[key], infer_1[key])
    # Without dropout, training and inference agree.
    plain = predictors.MaskRCNNBoxPredictor(3, dropout_keep_probability=0.5)
    np.testing.assert_allclose(plain(features, training=True)[CLS],
                               plain(features, training=False)[CLS])

  def test_gradients_regularizers_and_tf_function(self):
    head = predictors.MaskRCNNBoxPredictor(3, use_dropout=True)
    fn = tf.function(lambda f: head(f, training=True), input_signature=[
        tf.TensorSpec([None, None, None, 4], tf.float32)])
    features = tf.random.normal([6, 3, 3, 4], seed=7)
    out = fn(features)
    assert out[BOX].shape == (6, 3, 4) and out[CLS].shape == (6, 4)
    grads = _grads(head, lambda: tf.reduce_sum(fn(features)[BOX] ** 2) +
                   tf.reduce_sum(fn(features)[CLS] ** 2))
    assert len(grads) == 4  # two Dense kernels and biases.
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)
    # Default L2 weight decay 4e-5 -> one regularization loss per kernel.
    assert len(head.losses) == 2

  def test_errors(self):
    with pytest.raises(ValueError, match='num_classes'):
      predictors.MaskRCNNBoxPredictor(0)
    with pytest.raises(ValueError, match='dropout_keep_probability'):
      predictors.MaskRCNNBoxPredictor(2, dropout_keep_probability=0.0)
    with pytest.raises(ValueError, match='box_classifier_features'):
      predictors.MaskRCNNBoxPredictor(2)(tf.zeros([3, 4]))


class TestRfcnBoxPredictor:

  def test_shapes_and_variables(self):
    head = predictors.RfcnBoxPredictor(3, num_spatial_bins=(2, 2), depth=8,
                                       crop_size=(4, 4))
    feature_map = tf.random.normal([2, 6, 6, 4], seed=8)
    boxes = tf.random.uniform([2, 3, 4], seed=9)
    out = head(feature_map, boxes, training=False)
    assert out[BOX].shape == (6, 1, 4)
    assert out[CLS].shape == (6, 4)
    assert out[BOX].dtype == tf.float32 and out[CLS].dtype == tf.float32
    shapes = sorted(tuple(v.shape) for v in head.trainable_variables)
    # reduce-depth kernel 1x1x4x8 (+ BN gamma/beta 8), class maps
    # 2*2*(3+1) = 16 channels, box maps 2*2*4 = 16 channels, with biases.
    assert shapes == sorted([(1, 1, 4, 8), (8,), (8,), (1, 1, 8, 16), (16,),
                             (1, 1, 8, 16), (16,)])
    per_class = predictors.RfcnBoxPredictor(
        3, num_spatial_bins=(2, 2), depth=8, crop_size=(4, 4),
        share_box_across_classes=False)
    out = per_class(feature_map, boxes)
    assert out[BOX].shape == (6, 3, 4)
    out = head(feature_map, tf.zeros([2, 0, 4]))
    assert out[BOX].shape == (0, 1, 4) and out[CLS].shape == (0, 4)

  def test_constant_score_maps_vote(self):
    # Kernels 0, biases b: every score map is the constant bias. 2x2 bins,
    # num_classes = 2 (3 slots): class channel g * 3 + c = 10 g + c, so the
    # voted logit of slot c = mean_g(10 g + c) = 15 + c (Dai et al. 2016
    # Eq. 1-2). Box channel g * 4 + k = 100 g + k -> 150 + k.
    head = predictors.RfcnBoxPredictor(2, num_spatial_bins=(2, 2), depth=4,
                                       crop_size=(4, 4))
    feature_map = tf.random.normal([2, 5, 5, 3], seed=10)
    boxes = tf.constant([[[0.1, 0.1, 0.9, 0.6]],
                         [[0.0, 0.0, 1.0, 1.0]]])
    head(feature_map, boxes)
    head._class_conv.set_weights(  # pylint: disable=protected-access
        [np.zeros([1, 1, 4, 12]),
         np.array([10.0 * g + c for g in range(4) for c in range(3)])])
    head._box_conv.set_weights(  # pylint: disable=protected-access
        [np.zeros([1, 1, 4, 16]),
         np.array([100.0 * g + k for g in range(4) for k in range(4)])])
    out = head(feature_map, boxes)
    np.testing.assert_allclose(out[CLS], [[15.0, 16.0, 17.0]] * 2, rtol=1e-6)
    np.testing.assert_allclose(out[BOX], [[[150.0, 151.0, 152.0, 153.0]]] * 2,
                               rtol=1e-6)

  def test_bins_read_their_own_region(self):
    # Linear head, depth 1 passing v(y, x) = 10 y + x (4x4 map). Slot 0 reads
    # only group 0 (bin (0, 0)), slot 1 only group 3 (bin (1, 1)), slot 2
    # nothing. Whole-map box, crop 4 with 2x2 bins -> 2x2 samples per bin:
    # bin (0, 0) sub-box rows/cols 0 .. 1.5, samples {0, 1.5}, mean 0.75:
    # 7.5 + 0.75 = 8.25; bin (1, 1) rows/cols 1.5 .. 3, mean 2.25:
    # 22.5 + 2.25 = 24.75. Voting divides by the 4 bins: 2.0625, 6.1875, 0.
    head = predictors.RfcnBoxPredictor(2, conv_hyperparams=LINEAR,
                                       num_spatial_bins=(2, 2), depth=1,
                                       crop_size=(4, 4))
    feature_map = _ramp(4, 4)
    boxes = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
    head(feature_map, boxes)
    head._shared_layers[0].set_weights(  # pylint: disable=protected-access
        [np.ones([1, 1, 1, 1]), np.zeros([1])])
    kernel = np.zeros([1, 1, 1, 12])
    kernel[..., 0 * 3 + 0] = 1.0  # group 0, slot 0.
    kernel[..., 3 * 3 + 1] = 1.0  # group 3, slot 1.
    head._class_conv.set_weights(  # pylint: disable=protected-access
        [kernel, np.zeros([12])])
    out = head(feature_map, boxes)
    np.testing.assert_allclose(out[CLS], [[2.0625, 6.1875, 0.0]], rtol=1e-6,
                               atol=1e-6)

  def test_gradients_and_tf_function(self):
    head = predictors.RfcnBoxPredictor(2, num_spatial_bins=(3, 3), depth=4,
                                       crop_size=(6, 6))
    fn = tf.function(lambda f, b: head(f, b, training=True), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32),
        tf.TensorSpec([None, None, 4], tf.float32)])
    feature_map = tf.random.normal([1, 7, 7, 3], seed=11)
    boxes = tf.constant([[[0.1, 0.1, 0.8, 0.7], [0.3, 0.2, 0.6, 0.9]]])
    out = fn(feature_map, boxes)
    assert out[BOX].shape == (2, 1, 4) and out[CLS].shape == (2, 3)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(boxes)
      result = fn(feature_map, boxes)
      loss = (tf.reduce_sum(result[BOX] ** 2) +
              tf.reduce_sum(result[CLS] ** 2))
    grads = tape.gradient(loss, head.trainable_variables)
    assert len(grads) == 7
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)
    assert all(v.trainable for v in head.trainable_variables)
    grad_boxes = tape.gradient(loss, boxes)
    assert grad_boxes is None or not np.any(grad_boxes.numpy())

  def test_errors(self):
    with pytest.raises(ValueError, match='crop_size'):
      predictors.RfcnBoxPredictor(2, num_spatial_bins=(3, 3), crop_size=(8, 9))
    with pytest.raises(ValueError, match='num_classes'):
      predictors.RfcnBoxPredictor(0)
    head = predictors.RfcnBoxPredictor(2, depth=4)
    with pytest.raises(ValueError, match='proposal_boxes'):
      head(tf.zeros([1, 4, 4, 2]), tf.zeros([2, 4]))
    with pytest.raises(ValueError, match='feature_map'):
      head(tf.zeros([4, 4, 2]), tf.zeros([1, 2, 4]))
