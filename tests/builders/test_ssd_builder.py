"""Tests of od_meta.builders.ssd_builder, box_predictor_builder and
model_builder on the SSD configs of configs/.

Every configs/ssd_*.config is shrunk to 64x64 inputs with dotted overrides
(config_util.merge_external_params_with_configs) and must build, for
training and for inference, and run preprocess / predict / loss /
postprocess on a batch of 2 images. Expected anchor counts at 64x64:

  * ssd_mobilenet_v2 (num_layers 3): maps 8x8, 4x4, 2x2, 5 anchors per
    location (4 aspect ratios + the interpolated scale): 84 * 5 = 420;
  * FPN configs (P3-P5): 8x8, 4x4, 2x2, 3 aspect ratios x 2 scales per
    octave = 6 per location: 84 * 6 = 504;
  * ssd_vgg16 with extra_layer_style 'same' (num_layers 6): 8x8, 4x4, 2x2,
    1x1, 1x1, 1x1; the lowest layer has 3 anchors
    (reduce_boxes_in_lowest_layer), the others 5 ratios + 1 = 6:
    64 * 3 + 23 * 6 = 330.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from od_meta.builders import box_predictor_builder
from od_meta.builders import model_builder
from od_meta.builders import ssd_builder
from od_meta.core import standard_fields as fields
from od_meta.heads import box_predictor
from od_meta.meta_architectures import ssd_meta_arch
from od_meta.protos import box_predictor_pb2
from od_meta.protos import model_pb2
from od_meta.utils import config_util

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_SSD_CONFIGS = sorted(glob.glob(os.path.join(_REPO, 'configs',
                                             'ssd_*.config')))
_SIZE = 64
_RESIZER = f'fixed_shape_resizer {{ height: {_SIZE} width: {_SIZE} }}'

# config file name -> (extra overrides, expected number of anchors at 64x64).
_SMALL = {
    'ssd_mobilenet_v2_digits.config': (
        {'model.ssd.feature_extractor.num_layers': 3,
         'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3},
        420),
    # The small-digits configs of the README's "Fitting a config to a
    # dataset": the default one and the two analyze_dataset.py proposals
    # (same structure, 4 aspect ratios + the interpolated scale).
    'ssd_mobilenet_v2_digits_small.config': (
        {'model.ssd.feature_extractor.num_layers': 3,
         'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3},
        420),
    'ssd_mobilenet_v2_digits_small_anchors.config': (
        {'model.ssd.feature_extractor.num_layers': 3,
         'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3},
        420),
    'ssd_mobilenet_v2_digits_small_fitted.config': (
        {'model.ssd.feature_extractor.num_layers': 3,
         'model.ssd.anchor_generator.ssd_anchor_generator.num_layers': 3},
        420),
    'ssd_mobilenet_v2_fpnlite_digits.config': ({}, 504),
    'ssd_resnet50_fpn_retinanet_digits.config': ({}, 504),
    'ssd_vgg16_300_digits.config': (
        {'model.ssd.feature_extractor.extra_layer_style': 'same'}, 330),
}
_DET = fields.DetectionResultFields


def _small_configs(path):
  overrides, num_anchors = _SMALL[os.path.basename(path)]
  configs = config_util.get_configs_from_pipeline_file(path)
  configs = config_util.merge_external_params_with_configs(
      configs, dict(overrides, **{'model.ssd.image_resizer': _RESIZER}))
  return configs, num_anchors


def _mobilenet_model_config():
  configs, _ = _small_configs(
      os.path.join(_REPO, 'configs', 'ssd_mobilenet_v2_digits.config'))
  return configs['model']


def test_every_ssd_config_is_covered():
  names = {os.path.basename(p) for p in _SSD_CONFIGS}
  assert names, 'no configs/ssd_*.config found'
  assert names <= set(_SMALL), (
      f'add small-size overrides for {sorted(names - set(_SMALL))}')


@pytest.mark.parametrize('path', _SSD_CONFIGS, ids=os.path.basename)
def test_config_builds_and_runs(path):
  configs, num_anchors = _small_configs(path)
  num_classes = configs['model'].ssd.num_classes
  max_total = (configs['model'].ssd.post_processing.batch_non_max_suppression
               .max_total_detections)
  rng = np.random.default_rng(0)
  for is_training in (True, False):
    model = model_builder.build(configs['model'], is_training=is_training)
    assert isinstance(model, ssd_meta_arch.SSDMetaArch)
    assert model.num_classes == num_classes
    # Raw images of another size go through the config's resizer.
    images = tf.constant(rng.uniform(0, 255, [2, 48, 80, 3]), tf.float32)
    preprocessed, true_shapes = model.preprocess(images)
    assert preprocessed.shape == (2, _SIZE, _SIZE, 3)
    np.testing.assert_array_equal(true_shapes.numpy(), [[_SIZE, _SIZE, 3]] * 2)
    pred = model.predict(preprocessed, true_shapes, training=is_training)
    slots = pred['class_predictions_with_background'].shape[-1]
    assert pred['box_encodings'].shape == (2, num_anchors, 4)
    assert pred['anchors'].shape == (num_anchors, 4)
    ssd = configs['model'].ssd
    with_background = (ssd.add_background_class and
                       not ssd.encode_background_as_zeros)
    assert slots == num_classes + (1 if with_background else 0)
    model.provide_groundtruth(
        [tf.constant([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.8]]),
         tf.zeros([0, 4])],
        [tf.constant([3, 9]), tf.zeros([0], tf.int32)])
    losses = model.loss(pred, true_shapes)
    assert set(losses) == {'Loss/localization_loss',
                           'Loss/classification_loss'}
    for name, value in losses.items():
      assert np.isfinite(value.numpy()), name
      assert value.numpy() >= 0.0, name
    assert losses['Loss/classification_loss'].numpy() > 0.0
    det = model.postprocess(pred, true_shapes)
    assert det[_DET.detection_boxes].shape == (2, max_total, 4)
    assert det[_DET.detection_scores].shape == (2, max_total)
    classes = det[_DET.detection_classes].numpy()
    num = det[_DET.num_detections].numpy()
    assert det[_DET.num_detections].dtype == tf.float32
    for i in range(2):
      valid = classes[i, :int(num[i])]
      assert ((valid >= 0) & (valid < num_classes)).all()
    boxes = det[_DET.detection_boxes].numpy()
    assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()
    # Weight decay from conv_hyperparams reaches model.losses.
    assert model.losses, 'no regularization losses'


def test_unknown_feature_extractor_type_lists_known_types():
  model_config = _mobilenet_model_config()
  model_config.ssd.feature_extractor.type = 'ssd_alexnet'
  with pytest.raises(ValueError) as info:
    model_builder.build(model_config, is_training=True)
  message = str(info.value)
  assert 'ssd_alexnet' in message
  assert 'ssd.feature_extractor.type' in message
  for known in ssd_builder.FEATURE_EXTRACTORS:
    assert known in message


@pytest.mark.parametrize('field', [
    'box_coder', 'matcher', 'similarity_calculator', 'anchor_generator',
    'box_predictor', 'loss', 'post_processing', 'image_resizer',
    'feature_extractor'])
def test_missing_required_field_is_named(field):
  model_config = _mobilenet_model_config()
  model_config.ssd.ClearField(field)
  with pytest.raises(ValueError, match=rf'ssd\.{field}\b'):
    model_builder.build(model_config, is_training=True)


def test_bad_num_classes():
  model_config = _mobilenet_model_config()
  model_config.ssd.num_classes = 0
  with pytest.raises(ValueError, match='ssd.num_classes'):
    model_builder.build(model_config, is_training=True)


def test_ssd_builder_rejects_wrong_message_type():
  with pytest.raises(TypeError, match='Ssd'):
    ssd_builder.build(model_pb2.DetectionModel(), is_training=True)


def test_encode_background_as_zeros_gives_num_classes_slots():
  model_config = _mobilenet_model_config()
  model_config.ssd.encode_background_as_zeros = True
  model = model_builder.build(model_config, is_training=True)
  assert model.box_predictor.num_class_slots == 10
  model_config.ssd.encode_background_as_zeros = False
  model_config.ssd.add_background_class = False
  model = model_builder.build(model_config, is_training=True)
  assert model.box_predictor.num_class_slots == 10
  model_config.ssd.add_background_class = True
  model = model_builder.build(model_config, is_training=True)
  assert model.box_predictor.num_class_slots == 11


def test_anchor_and_extractor_layer_mismatch_fails_at_predict():
  # The extractor makes 3 maps but the anchor generator expects 4.
  model_config = _mobilenet_model_config()
  model_config.ssd.anchor_generator.ssd_anchor_generator.num_layers = 4
  model = model_builder.build(model_config, is_training=False)
  with pytest.raises(ValueError, match='feature map'):
    model(tf.zeros([1, 64, 64, 3]))


def test_model_builder_unset_oneof():
  with pytest.raises(ValueError, match=r'DetectionModel\.model is empty'):
    model_builder.build(model_pb2.DetectionModel(), is_training=True)


def test_model_builder_unimplemented_meta_architecture():
  model_config = model_pb2.DetectionModel()
  model_config.corner_net.num_classes = 3
  with pytest.raises(ValueError) as info:
    model_builder.build(model_config, is_training=True)
  message = str(info.value)
  assert 'corner_net' in message
  assert 'not implemented' in message
  assert 'ssd' in message  # lists what it builds


def test_model_builder_rejects_wrong_message_type():
  with pytest.raises(TypeError, match='DetectionModel'):
    model_builder.build(model_pb2.DetectionModel().ssd, is_training=True)


# ------------------------------------------------------ box_predictor_builder
def test_box_predictor_builder_convolutional():
  config = box_predictor_pb2.BoxPredictor()
  config.convolutional_box_predictor.kernel_size = 1
  config.convolutional_box_predictor.box_code_size = 4
  config.convolutional_box_predictor.class_prediction_bias_init = -2.0
  predictor = box_predictor_builder.build(
      config, num_class_slots=4, num_predictions_per_location_list=[2, 3])
  assert isinstance(predictor, box_predictor.ConvolutionalBoxPredictor)
  assert predictor.num_class_slots == 4
  assert predictor.num_predictions_per_location_list == [2, 3]
  out = predictor([tf.zeros([1, 4, 4, 8]), tf.zeros([1, 2, 2, 8])])
  # 4*4*2 + 2*2*3 = 44 anchors; zero inputs give the bias: -2.
  assert out['box_encodings'].shape == (1, 44, 4)
  np.testing.assert_allclose(
      out['class_predictions_with_background'].numpy(), -2.0, atol=1e-6)


def test_box_predictor_builder_weight_shared():
  config = box_predictor_pb2.BoxPredictor()
  shared = config.weight_shared_convolutional_box_predictor
  shared.depth = 8
  shared.num_layers_before_predictor = 1
  predictor = box_predictor_builder.build(
      config, num_class_slots=3, num_predictions_per_location_list=[2, 2])
  assert isinstance(predictor,
                    box_predictor.WeightSharedConvolutionalBoxPredictor)
  out = predictor([tf.zeros([1, 4, 4, 8]), tf.zeros([1, 2, 2, 8])])
  assert out['class_predictions_with_background'].shape == (1, 40, 3)


def test_box_predictor_builder_errors():
  with pytest.raises(ValueError, match='box_predictor_oneof is empty'):
    box_predictor_builder.build(box_predictor_pb2.BoxPredictor(),
                                num_class_slots=3,
                                num_predictions_per_location_list=[1])
  config = box_predictor_pb2.BoxPredictor()
  config.rfcn_box_predictor.SetInParent()
  with pytest.raises(ValueError, match='two-stage'):
    box_predictor_builder.build(config, num_class_slots=3,
                                num_predictions_per_location_list=[1])
  with pytest.raises(TypeError):
    box_predictor_builder.build(model_pb2.DetectionModel(),
                                num_class_slots=3,
                                num_predictions_per_location_list=[1])


def test_box_code_size_must_match_the_box_coder():
  # FasterRcnnBoxCoder encodes 4 values; a 5-value predictor used to build
  # and fail later with a shape error inside the loss.
  model_config = _mobilenet_model_config()
  model_config.ssd.box_predictor.convolutional_box_predictor.box_code_size = 5
  with pytest.raises(ValueError, match=r'box_code_size is 5 .* 4 values'):
    model_builder.build(model_config, is_training=True)
