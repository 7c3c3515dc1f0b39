"""Tests of the Faster R-CNN / R-FCN two-stage feature extractors.

Shapes follow 'SAME' semantics: first stage ceil(H / s) x ceil(W / s)
(Huang et al. 2017, section 3.6.1: stride 16, or 8 atrous for ResNet);
second stage on 7x7 crops (14x14 crop_and_resize then 2x2 max-pool) or
17x17 crops (Inception, no max-pool).
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.feature_extractors import faster_rcnn_feature_extractors as fe


@functools.lru_cache(maxsize=None)
def _extractor(key, **kwargs):
  return fe.FEATURE_EXTRACTORS[key](**kwargs)


# type -> (constructor kwargs, C1, crop side given to the second stage,
#          expected second-stage output [h2, w2, C2]).
_CASES = {
    # conv4: 1024; conv5_block1 1x1 stride 2 'valid' on 7: (7 - 1) // 2 + 1 = 4.
    'faster_rcnn_resnet50_keras': ({}, 1024, 7, (4, 4, 2048)),
    'faster_rcnn_resnet101_keras': ({}, 1024, 7, (4, 4, 2048)),
    # alpha 0.35: make_divisible(96 * 0.35 = 33.6, 8) = 32; block_13 3x3/2
    # 'same' on 7: ceil(7 / 2) = 4; out_relu keeps 1280 for alpha <= 1.
    'faster_rcnn_mobilenet_v2_keras': ({'depth_multiplier': 0.35}, 32, 7,
                                       (4, 4, 1280)),
    # conv5_3: 512; flatten 7 * 7 * 512 -> fc6 -> fc7 (fc_depth 16).
    'faster_rcnn_vgg16_keras': ({'fc_depth': 16}, 512, 7, (1, 1, 16)),
    # Mixed_6e (mixed7) 768; Mixed_7a 3x3/2 'valid': (17 - 3) // 2 + 1 = 8.
    'faster_rcnn_inception_v3_keras': ({}, 768, 17, (8, 8, 2048)),
    'faster_rcnn_inception_resnet_v2_keras': ({}, 1088, 17, (8, 8, 1536)),
}


def _build(key):
  kwargs, _, _, _ = _CASES[key]
  return _extractor(key, **kwargs)


def _images(shape, seed=0):
  return tf.random.stateless_uniform(shape, [seed, 1], 0.0, 255.0)


def test_registry_has_all_types():
  assert set(fe.FEATURE_EXTRACTORS) == set(_CASES)


@pytest.mark.parametrize('key', sorted(_CASES))
def test_shapes_and_strides(key):
  e = _build(key)
  _, c1, crop, out = _CASES[key]
  assert e.first_stage_features_stride == 16
  assert e.name == key.replace('_keras', '_feature_extractor')
  assert e.proposal_feature_channels == c1
  assert e.box_classifier_feature_channels == out[-1]
  assert e.default_initial_crop_size == (17 if 'inception' in key else 14)
  # 64 x 64 -> 4 x 4; 40 x 72 -> ceil(40 / 16) = 3, ceil(72 / 16) = 5.
  images = _images([2, 64, 64, 3])
  preprocessed = e.preprocess(images)
  assert preprocessed.shape == (2, 64, 64, 3)
  assert preprocessed.dtype == tf.float32
  features = e.extract_proposal_features(preprocessed)
  assert features.shape == (2, 4, 4, c1)
  assert features.dtype == tf.float32
  features = e.extract_proposal_features(e.preprocess(_images([1, 40, 72, 3])))
  assert features.shape == (1, 3, 5, c1)
  crops = tf.random.stateless_normal([3, crop, crop, c1], [1, 2])
  box_features = e.extract_box_classifier_features(crops)
  assert box_features.shape == (3,) + out
  assert box_features.dtype == tf.float32
  assert np.all(np.isfinite(box_features.numpy()))


def test_preprocess_golden_values():
  # One RGB pixel (255, 0, 51), given as uint8 (cast to float32).
  pixel = tf.constant([[[[255, 0, 51]]]], tf.uint8)
  # Caffe style (ResNet, VGG16): RGB -> BGR (51, 0, 255) minus the means
  # (103.939, 116.779, 123.68): (-52.939, -116.779, 131.32).
  for key in ('faster_rcnn_resnet50_keras', 'faster_rcnn_vgg16_keras'):
    out = _build(key).preprocess(pixel)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy().ravel(),
                               [-52.939, -116.779, 131.32], atol=1e-3)
  # x / 127.5 - 1 (MobileNetV2, Inception): (1, -1, 51 / 127.5 - 1 = -0.6).
  for key in ('faster_rcnn_mobilenet_v2_keras',
              'faster_rcnn_inception_v3_keras'):
    np.testing.assert_allclose(_build(key).preprocess(pixel).numpy().ravel(),
                               [1.0, -1.0, -0.6], atol=1e-6)


def test_zero_crops():
  # oneDNN's Conv2D returns the input's shape for an empty batch; the
  # extractor guards it, eagerly and in graph mode with a dynamic M.
  e = _build('faster_rcnn_mobilenet_v2_keras')
  out = e.extract_box_classifier_features(tf.zeros([0, 7, 7, 32]))
  assert out.shape == (0, 4, 4, 1280)
  out = _build('faster_rcnn_resnet50_keras').extract_box_classifier_features(
      tf.zeros([0, 7, 7, 1024]), training=True)
  assert out.shape == (0, 4, 4, 2048)
  out = _build('faster_rcnn_vgg16_keras').extract_box_classifier_features(
      tf.zeros([0, 7, 7, 512]))
  assert out.shape == (0, 1, 1, 16)

  @tf.function(input_signature=[tf.TensorSpec([None, 7, 7, 32], tf.float32)])
  def second_stage(crops):
    return e.extract_box_classifier_features(crops, training=True)

  assert second_stage(tf.zeros([0, 7, 7, 32])).shape == (0, 4, 4, 1280)
  crops = tf.random.stateless_normal([2, 7, 7, 32], [5, 6])
  np.testing.assert_allclose(
      second_stage(crops).numpy(),
      e.extract_box_classifier_features(crops).numpy(), rtol=1e-5, atol=1e-5)


def test_resnet_atrous_stride_8_and_conv5_stride_1():
  e16 = _build('faster_rcnn_resnet50_keras')
  e8 = _extractor('faster_rcnn_resnet50_keras', first_stage_features_stride=8,
                  conv5_stride=1)
  assert e8.first_stage_features_stride == 8
  # 64 / 8 = 8; 40 x 72 -> ceil: 5 x 9.
  assert e8.extract_proposal_features(
      e8.preprocess(_images([1, 64, 64, 3]))).shape == (1, 8, 8, 1024)
  assert e8.extract_proposal_features(
      e8.preprocess(_images([1, 40, 72, 3]))).shape == (1, 5, 9, 1024)
  model = e8.keras_model
  assert tuple(model.get_layer('conv4_block1_1_conv').strides) == (1, 1)
  assert tuple(model.get_layer('conv4_block1_0_conv').strides) == (1, 1)
  assert tuple(model.get_layer('conv4_block3_2_conv').dilation_rate) == (2, 2)
  # conv5 without stride: dilation 2 (its own) x 2 (conv4's) = 4.
  assert tuple(model.get_layer('conv5_block1_1_conv').strides) == (1, 1)
  assert tuple(model.get_layer('conv5_block2_2_conv').dilation_rate) == (4, 4)
  assert tuple(e16.keras_model.get_layer('conv4_block3_2_conv').dilation_rate
               ) == (1, 1)
  assert tuple(e16.keras_model.get_layer('conv5_block1_1_conv').strides
               ) == (2, 2)
  # Same variables and shapes as the default network: ImageNet weights
  # transfer.
  assert ([tuple(w.shape) for w in e8.weights] ==
          [tuple(w.shape) for w in e16.weights])
  # conv5 stride 1: 7x7 crops stay 7x7.
  assert e8.conv5_stride == 1
  assert e8.extract_box_classifier_features(
      tf.zeros([1, 7, 7, 1024])).shape == (1, 7, 7, 2048)


def _copy_weights_by_name(source, target):
  for layer in target.layers:
    if layer.weights:
      layer.set_weights(source.get_layer(layer.name).get_weights())


def test_resnet50_stages_compose_to_keras_model():
  e = _build('faster_rcnn_resnet50_keras')
  ref = tf.keras.applications.ResNet50(include_top=False, weights=None,
                                       input_shape=(None, None, 3))
  _copy_weights_by_name(e.keras_model, ref)
  x = e.preprocess(_images([1, 64, 64, 3], seed=3))
  conv4 = e.extract_proposal_features(x)
  ref_conv4 = keras.Model(ref.inputs[0],
                          ref.get_layer('conv4_block6_out').output)(x)
  np.testing.assert_allclose(conv4.numpy(), ref_conv4.numpy(), rtol=1e-4,
                             atol=1e-4 * np.abs(ref_conv4.numpy()).max())
  # conv5 on the whole 4x4 conv4 map (no crop): stride 2 -> 2x2, equal to
  # keras' conv5_block3_out of the 64x64 image (64 / 32 = 2).
  conv5 = e.extract_box_classifier_features(conv4)
  ref_conv5 = ref(x, training=False).numpy()
  assert conv5.shape == ref_conv5.shape == (1, 2, 2, 2048)
  np.testing.assert_allclose(conv5.numpy(), ref_conv5, rtol=1e-4,
                             atol=1e-4 * np.abs(ref_conv5).max())


def test_mobilenet_v2_and_vgg16_stages_compose_to_keras_model():
  # 64x64: every map has even size, where 'same' == keras' (0, 1) padding.
  e = _build('faster_rcnn_mobilenet_v2_keras')
  ref = tf.keras.applications.MobileNetV2(include_top=False, weights=None,
                                          alpha=0.35,
                                          input_shape=(None, None, 3))
  _copy_weights_by_name(e.keras_model, ref)
  x = e.preprocess(_images([1, 64, 64, 3], seed=4))
  out = e.extract_box_classifier_features(e.extract_proposal_features(x))
  expected = ref(x, training=False).numpy()
  assert out.shape == expected.shape == (1, 2, 2, 1280)
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4,
                             atol=1e-4 * np.abs(expected).max())

  e = _build('faster_rcnn_vgg16_keras')
  ref = tf.keras.applications.VGG16(include_top=False, weights=None,
                                    input_shape=(None, None, 3))
  _copy_weights_by_name(e.keras_model, ref)
  x = e.preprocess(_images([1, 64, 64, 3], seed=5))
  expected = keras.Model(ref.inputs[0],
                         ref.get_layer('block5_conv3').output)(x).numpy()
  out = e.extract_proposal_features(x).numpy()
  assert out.shape == expected.shape == (1, 4, 4, 512)
  np.testing.assert_allclose(out, expected, rtol=1e-4,
                             atol=1e-4 * np.abs(expected).max())


def _batch_norms(e):
  return [l for l in e.keras_model.layers
          if isinstance(l, keras.layers.BatchNormalization)]


def test_frozen_batch_norm():
  e = _build('faster_rcnn_mobilenet_v2_keras')
  bns = _batch_norms(e)
  assert bns and all(isinstance(l, fe.FrozenBatchNormalization) for l in bns)
  trainable = {id(v) for v in e.trainable_variables}
  assert not any(id(l.gamma) in trainable or id(l.beta) in trainable
                 for l in bns)
  assert any(id(v) in trainable for v in
             e.keras_model.get_layer('block_13_expand').weights)
  before = [l.moving_mean.numpy().copy() for l in bns]
  x = e.preprocess(_images([2, 64, 64, 3], seed=6))
  train_out = e.extract_box_classifier_features(
      e.extract_proposal_features(x, training=True), training=True)
  infer_out = e.extract_box_classifier_features(
      e.extract_proposal_features(x, training=False), training=False)
  np.testing.assert_allclose(train_out.numpy(), infer_out.numpy(), rtol=1e-5,
                             atol=1e-6)
  for b, l in zip(before, bns):
    np.testing.assert_array_equal(b, l.moving_mean.numpy())
  # A parent's `trainable = True` does not unfreeze them.
  e.trainable = True
  assert not any(id(l.gamma) in {id(v) for v in e.trainable_variables}
                 for l in bns)


def test_trainable_batch_norm_uses_conv_hyperparams():
  hp = hyperparams_lib.ConvHyperparams(batch_norm_momentum=0.5,
                                       batch_norm_epsilon=0.01)
  e = _extractor('faster_rcnn_mobilenet_v2_keras', depth_multiplier=0.35,
                 batch_norm_trainable=True, conv_hyperparams=hp)
  bns = _batch_norms(e)
  assert not any(isinstance(l, fe.FrozenBatchNormalization) for l in bns)
  assert all(l.momentum == 0.5 and l.epsilon == 0.01 for l in bns)
  trainable = {id(v) for v in e.trainable_variables}
  assert all(id(l.gamma) in trainable and id(l.beta) in trainable
             for l in bns)
  # Initial moving mean 0; one training step moves it by
  # (1 - 0.5) * batch_mean, nonzero for the first layer's BN.
  bn = e.keras_model.get_layer('bn_Conv1')
  np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
  x = e.preprocess(_images([2, 64, 64, 3], seed=7))
  e.extract_proposal_features(x, training=True)
  assert np.abs(bn.moving_mean.numpy()).max() > 0
  # The last block's BN (second stage) updates too.
  bn = e.keras_model.get_layer('Conv_1_bn')
  e.extract_box_classifier_features(tf.random.stateless_normal(
      [2, 7, 7, 32], [3, 4]), training=True)
  assert np.abs(bn.moving_mean.numpy()).max() > 0


def test_under_tf_function_with_dynamic_shapes():
  e = _build('faster_rcnn_mobilenet_v2_keras')

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3],
                                              tf.float32)])
  def run(images):
    features = e.extract_proposal_features(e.preprocess(images))
    crops = tf.image.resize(features, [7, 7])
    return features, e.extract_box_classifier_features(crops)

  images = _images([1, 48, 80, 3], seed=8)
  features, box = run(images)
  assert features.shape == (1, 3, 5, 32)
  assert box.shape == (1, 4, 4, 1280)
  eager = e.extract_proposal_features(e.preprocess(images))
  np.testing.assert_allclose(features.numpy(), eager.numpy(), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize('key,stride', [
    ('faster_rcnn_resnet50_keras', 4),
    ('faster_rcnn_resnet50_keras', '16'),
    ('faster_rcnn_resnet101_keras', 32),
    ('faster_rcnn_mobilenet_v2_keras', 8),
    ('faster_rcnn_vgg16_keras', 8),
    ('faster_rcnn_inception_v3_keras', 8),
    ('faster_rcnn_inception_resnet_v2_keras', 8),
])
def test_unsupported_stride_raises(key, stride):
  with pytest.raises(ValueError, match='first_stage_features_stride'):
    fe.FEATURE_EXTRACTORS[key](first_stage_features_stride=stride)


def test_bad_arguments_and_inputs_raise():
  with pytest.raises(ValueError, match='weights'):
    fe.FasterRCNNMobileNetV2KerasFeatureExtractor(weights=3)
  with pytest.raises(ValueError, match='depth_multiplier'):
    fe.FasterRCNNMobileNetV2KerasFeatureExtractor(depth_multiplier=0.0)
  with pytest.raises(ValueError, match='conv5_stride'):
    fe.FasterRCNNResNet50KerasFeatureExtractor(conv5_stride=4)
  with pytest.raises(ValueError, match='fc_depth'):
    fe.FasterRCNNVGG16KerasFeatureExtractor(fc_depth=0)
  e = _build('faster_rcnn_vgg16_keras')
  with pytest.raises(ValueError, match='preprocessed_inputs'):
    e.extract_proposal_features(tf.zeros([64, 64, 3]))
  with pytest.raises(ValueError, match='proposal_feature_maps'):
    e.extract_box_classifier_features(tf.zeros([1, 7, 7, 3]))
  with pytest.raises(ValueError, match='pooled_crop_size'):
    e.extract_box_classifier_features(tf.zeros([1, 14, 14, 512]))


def test_mobilenet_min_depth_widens_narrow_convs():
  # alpha 0.35: expanded_conv_project (block 0) has
  # make_divisible(16 * 0.35, 8) = 8 filters; min_depth 16 widens it.
  e = _build('faster_rcnn_mobilenet_v2_keras')
  assert e.keras_model.get_layer('expanded_conv_project').filters == 8
  wide = fe.FasterRCNNMobileNetV2KerasFeatureExtractor(depth_multiplier=0.35,
                                                       min_depth=16)
  assert wide.keras_model.get_layer('expanded_conv_project').filters == 16
  assert wide.extract_proposal_features(
      tf.zeros([1, 32, 32, 3])).shape == (1, 2, 2, 32)


def test_vgg16_imagenet_fc_weight_copy():
  # A VGG16-shaped source on a 32x32 input: pool5 is 1x1x512, so its fc1
  # reads 512 inputs, like our fc6 with pooled_crop_size=1.
  e = fe.FasterRCNNVGG16KerasFeatureExtractor(fc_depth=8, pooled_crop_size=1)
  notop = tf.keras.applications.VGG16(include_top=False, weights=None,
                                      input_shape=(32, 32, 3))
  x = keras.layers.Flatten()(notop.output)
  x = keras.layers.Dense(8, name='fc1')(x)
  x = keras.layers.Dense(8, name='fc2')(x)
  source = keras.Model(notop.inputs, x)
  second = e.box_classifier_feature_extractor_model
  fe.copy_vgg16_imagenet_weights(source, e.keras_model,
                                 second.get_layer('fc6'),
                                 second.get_layer('fc7'))
  np.testing.assert_array_equal(second.get_layer('fc6').get_weights()[0],
                                source.get_layer('fc1').get_weights()[0])
  np.testing.assert_array_equal(
      e.keras_model.get_layer('block3_conv2').get_weights()[0],
      source.get_layer('block3_conv2').get_weights()[0])


def test_restore_backbone_weights(tmp_path):
  source = _build('faster_rcnn_mobilenet_v2_keras')
  prefix = tf.train.Checkpoint(model=source.keras_model).save(
      str(tmp_path / 'ckpt'))
  e = fe.FasterRCNNMobileNetV2KerasFeatureExtractor(depth_multiplier=0.35,
                                                    weights=prefix)
  kernel = e.keras_model.get_layer('block_13_expand').kernel
  assert not np.array_equal(
      kernel.numpy(), source.keras_model.get_layer('block_13_expand')
      .kernel.numpy())
  assert e.restore_backbone_weights()
  x = e.preprocess(_images([1, 32, 32, 3], seed=9))
  np.testing.assert_allclose(
      e.extract_proposal_features(x).numpy(),
      source.extract_proposal_features(x).numpy(), rtol=1e-5, atol=1e-5)
  e.backbone_weights = str(tmp_path / 'missing.weights.h5')
  with pytest.raises(ValueError, match='missing'):
    e.restore_backbone_weights()


def test_weights_are_shared_and_checkpointed_once():
  e = _build('faster_rcnn_resnet50_keras')
  ids = [id(v) for v in e.weights]
  assert len(ids) == len(set(ids))
  assert ({id(v) for v in e.proposal_feature_extractor_model.weights} |
          {id(v) for v in e.box_classifier_feature_extractor_model.weights}
          ) == set(ids)


def test_mobilenet_atrous_second_stage_keeps_stride_16():
  # R-FCN runs the second stage on the whole first-stage map: with
  # second_stage_stride=1 block_13 keeps the 8x8 map of a 128x128 input
  # (stride 16) instead of halving it, with the same weights' shapes.
  strided = fe.FasterRCNNMobileNetV2KerasFeatureExtractor(
      depth_multiplier=0.35, batch_norm_trainable=True)
  atrous = fe.FasterRCNNMobileNetV2KerasFeatureExtractor(
      depth_multiplier=0.35, batch_norm_trainable=True,
      second_stage_stride=1)
  assert atrous.second_stage_stride == 1
  x = tf.zeros([1, 128, 128, 3])
  features = atrous.extract_proposal_features(x)
  assert features.shape == (1, 8, 8, 32)
  assert atrous.extract_box_classifier_features(features).shape == (
      1, 8, 8, 1280)
  assert strided.extract_box_classifier_features(
      strided.extract_proposal_features(x)).shape == (1, 4, 4, 1280)
  assert ([tuple(v.shape) for v in atrous.keras_model.weights] ==
          [tuple(v.shape) for v in strided.keras_model.weights])
  layer = atrous.keras_model.get_layer('block_14_depthwise')
  assert tuple(layer.dilation_rate) == (2, 2)
  with pytest.raises(ValueError, match='second_stage_stride'):
    fe.FasterRCNNMobileNetV2KerasFeatureExtractor(second_stage_stride=4)
