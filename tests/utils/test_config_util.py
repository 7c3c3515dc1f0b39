"""Tests of od_meta.utils.config_util (pipeline config I/O and overrides)."""

import glob
import os

import pytest

from od_meta.protos import image_resizer_pb2
from od_meta.protos import model_pb2
from od_meta.protos import pipeline_pb2
from od_meta.utils import config_util

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.config')))

_SMALL = """
model {
  ssd {
    num_classes: 10
    image_resizer { fixed_shape_resizer { height: 128 width: 128 } }
    anchor_generator { ssd_anchor_generator { num_layers: 4 } }
    post_processing { score_converter: SIGMOID }
  }
}
train_config {
  batch_size: 32
  num_steps: 100
  data_augmentation_options { random_adjust_brightness { max_delta: 0.2 } }
  data_augmentation_options { random_horizontal_flip { } }
}
train_input_reader {
  label_map_path: "data/digits/label_map.pbtxt"
  tf_record_input_reader { input_path: "data/digits/train.tfrecord" }
}
eval_config { metrics_set: "coco_detection_metrics" }
eval_input_reader {
  name: "a"
  tf_record_input_reader { input_path: "a.tfrecord" }
}
eval_input_reader {
  name: "b"
  tf_record_input_reader { input_path: "b.tfrecord" }
}
"""


def _write(tmp_path, text, name='x.config'):
  path = tmp_path / name
  path.write_text(text, encoding='utf-8')
  return str(path)


def _small_configs(tmp_path):
  return config_util.get_configs_from_pipeline_file(_write(tmp_path, _SMALL))


# ------------------------------------------------------------ example configs
def test_there_are_example_configs():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  assert {'ssd_mobilenet_v2_digits.config',
          'ssd_mobilenet_v2_fpnlite_digits.config',
          'ssd_resnet50_fpn_retinanet_digits.config',
          'ssd_vgg16_300_digits.config'} <= names


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_example_config_parses(path):
  configs = config_util.get_configs_from_pipeline_file(path)
  model = configs['model']
  assert config_util.get_number_of_classes(model) == 10
  assert configs['train_config'].num_steps > 0
  # The small-digits configs read the variant of "Fitting a config to a
  # dataset" in the README.
  data = ('data/digits_small' if 'digits_small' in os.path.basename(path)
          else 'data/digits')
  assert list(configs['train_input_config'].tf_record_input_reader
              .input_path) == [f'{data}/train.tfrecord']
  assert configs['train_input_config'].label_map_path == (
      f'{data}/label_map.pbtxt')
  assert [list(r.tf_record_input_reader.input_path)
          for r in configs['eval_input_configs']] == [
              [f'{data}/val.tfrecord']]
  # Round trip through text format.
  pipeline = config_util.create_pipeline_proto_from_configs(configs)
  again = pipeline_pb2.TrainEvalPipelineConfig()
  config_util.parse_text_proto(config_util.config_to_text(pipeline), again)
  assert again == pipeline


def test_default_job_values():
  configs = config_util.get_configs_from_pipeline_file(
      os.path.join(ROOT, 'configs', 'ssd_mobilenet_v2_digits.config'))
  ssd = configs['model'].ssd
  assert ssd.feature_extractor.type == 'ssd_mobilenet_v2_keras'
  assert ssd.feature_extractor.depth_multiplier == pytest.approx(0.5)
  assert config_util.get_spatial_image_size(ssd.image_resizer) == [128, 128]
  assert ssd.matcher.argmax_matcher.matched_threshold == pytest.approx(0.5)
  assert ssd.box_coder.WhichOneof('box_coder_oneof') == (
      'faster_rcnn_box_coder')
  nms = ssd.post_processing.batch_non_max_suppression
  assert nms.iou_threshold == pytest.approx(0.6)
  assert ssd.loss.HasField('hard_example_miner')


# ------------------------------------------------------------------ defaults
def test_proto_defaults_follow_the_brief():
  ssd = model_pb2.DetectionModel().ssd
  coder = ssd.box_coder.faster_rcnn_box_coder
  assert (coder.y_scale, coder.x_scale, coder.height_scale,
          coder.width_scale) == (10.0, 10.0, 5.0, 5.0)
  argmax = ssd.matcher.argmax_matcher
  assert argmax.matched_threshold == pytest.approx(0.5)
  assert argmax.negatives_lower_than_unmatched
  assert not argmax.force_match_for_each_row
  nms = ssd.post_processing.batch_non_max_suppression
  assert (nms.iou_threshold, nms.max_detections_per_class,
          nms.max_total_detections) == (pytest.approx(0.6), 100, 100)
  miner = ssd.loss.hard_example_miner
  assert (miner.num_hard_examples, miner.iou_threshold) == (
      64, pytest.approx(0.7))
  focal = ssd.loss.classification_loss.weighted_sigmoid_focal
  assert (focal.gamma, focal.alpha) == (2.0, 0.25)
  frcnn = model_pb2.DetectionModel().faster_rcnn
  assert (frcnn.first_stage_minibatch_size, frcnn.first_stage_max_proposals,
          frcnn.second_stage_batch_size, frcnn.inference_max_proposals) == (
              256, 300, 64, 0)
  ttf = model_pb2.DetectionModel().ttfnet
  assert (ttf.alpha, ttf.beta, ttf.regression_scale,
          ttf.regression_loss_weight) == (
              pytest.approx(0.54), pytest.approx(0.54), 16.0, 5.0)


# -------------------------------------------------------------- parse errors
def test_unknown_field_names_file_line_column_and_field(tmp_path):
  path = _write(tmp_path, 'model {\n  ssd {\n    num_clases: 3\n  }\n}\n')
  with pytest.raises(config_util.ConfigError) as info:
    config_util.get_configs_from_pipeline_file(path)
  first_line = str(info.value).splitlines()[0]
  assert first_line.startswith(
      f'{path}:3:5: Message type "od_meta.protos.Ssd" has no field named '
      '"num_clases".')
  assert 'Did you mean "num_classes"?' in first_line
  assert info.value.path == path
  assert (info.value.line, info.value.column) == (3, 5)
  assert info.value.field == 'od_meta.protos.Ssd.num_clases'
  assert isinstance(info.value, ValueError)


def test_bad_enum_value(tmp_path):
  path = _write(tmp_path, (
      'model {\n  ssd {\n    post_processing {\n'
      '      score_converter: SOFTMAXX\n    }\n  }\n}\n'))
  with pytest.raises(config_util.ConfigError) as info:
    config_util.get_configs_from_pipeline_file(path)
  message = str(info.value)
  assert message.startswith(f'{path}:4:24: ')
  assert 'Enum type "od_meta.protos.PostProcessing.ScoreConverter" has no ' \
         'value named SOFTMAXX' in message
  assert info.value.field == (
      'od_meta.protos.PostProcessing.score_converter')


def test_string_to_int_field_names_the_field(tmp_path):
  path = _write(tmp_path, 'train_config {\n  batch_size: "eight"\n}\n')
  with pytest.raises(config_util.ConfigError) as info:
    config_util.get_configs_from_pipeline_file(path)
  lines = str(info.value).splitlines()
  # 'train_config {' / '  batch_size: "eight"': the value starts at column
  # 2 + len('batch_size: ') + 1 = 15.
  assert lines[0].startswith(f'{path}:2:15: Couldn\'t parse integer')
  assert ('field "batch_size" of message "od_meta.protos.TrainConfig"'
          in lines[0])
  assert lines[1].strip() == 'batch_size: "eight"'
  assert lines[2].index('^') == lines[1].index('"eight"')
  assert info.value.field == 'od_meta.protos.TrainConfig.batch_size'


def test_float_to_int_and_bool_errors(tmp_path):
  with pytest.raises(config_util.ConfigError, match='batch_size'):
    config_util.get_configs_from_pipeline_text(
        'train_config { batch_size: 2.5 }')
  with pytest.raises(config_util.ConfigError,
                     match='use_moving_averages'):
    config_util.get_configs_from_pipeline_text(
        'eval_config { use_moving_averages: maybe }')


def test_field_context_inside_comments_and_lists():
  text = ('# batch_size: { not a field\n'
          'train_config {\n'
          '  data_augmentation_options {\n'
          '    random_horizontal_flip { keypoint_flip_permutation: [0, "a"] }\n'
          '  }\n'
          '}\n')
  with pytest.raises(config_util.ConfigError) as info:
    config_util.get_configs_from_pipeline_text(text, path='k.config')
  assert str(info.value).startswith('k.config:4:')
  assert info.value.field == (
      'od_meta.protos.RandomHorizontalFlip.keypoint_flip_permutation')


def test_syntax_error_and_duplicate_field():
  with pytest.raises(config_util.ConfigError) as info:
    config_util.get_configs_from_pipeline_text('model { ssd { num_classes: 3 }',
                                               path='s.config')
  assert str(info.value).startswith('s.config:1:')
  assert info.value.field is None
  with pytest.raises(config_util.ConfigError,
                     match='should not have multiple "batch_size"'):
    config_util.get_configs_from_pipeline_text(
        'train_config { batch_size: 1 batch_size: 2 }')


def test_two_meta_architectures_is_an_error():
  with pytest.raises(config_util.ConfigError, match='oneof "model"'):
    config_util.get_configs_from_pipeline_text(
        'model { ssd { num_classes: 1 } faster_rcnn { num_classes: 1 } }')


def test_missing_file():
  with pytest.raises(FileNotFoundError):
    config_util.get_configs_from_pipeline_file('/nonexistent/x.config')


def test_config_override_merges_and_reports_errors(tmp_path):
  path = _write(tmp_path, _SMALL)
  configs = config_util.get_configs_from_pipeline_file(
      path, config_override='train_config { batch_size: 4 }')
  assert configs['train_config'].batch_size == 4
  assert configs['train_config'].num_steps == 100  # Merged, not replaced.
  with pytest.raises(config_util.ConfigError,
                     match=r'^<config_override>:1:16: .*"batch_sise"'):
    config_util.get_configs_from_pipeline_file(
        path, config_override='train_config { batch_sise: 4 }')


# ---------------------------------------------------------- configs dict I/O
def test_configs_dict_keys_and_round_trip(tmp_path):
  configs = _small_configs(tmp_path)
  assert set(configs) == {'model', 'train_config', 'train_input_config',
                          'eval_config', 'eval_input_configs',
                          'eval_input_config', 'export_config'}
  assert [r.name for r in configs['eval_input_configs']] == ['a', 'b']
  assert configs['eval_input_config'].name == 'a'
  pipeline = config_util.create_pipeline_proto_from_configs(configs)
  expected = pipeline_pb2.TrainEvalPipelineConfig()
  config_util.parse_text_proto(_SMALL, expected)
  assert pipeline == expected


def test_create_pipeline_proto_rejects_bad_input():
  with pytest.raises(ValueError, match='unknown keys'):
    config_util.create_pipeline_proto_from_configs({'modle': None})
  with pytest.raises(ValueError, match="configs\\['model'\\]"):
    config_util.create_pipeline_proto_from_configs(
        {'model': pipeline_pb2.TrainEvalPipelineConfig()})


def test_save_pipeline_config_refuses_overwrite(tmp_path):
  configs = _small_configs(tmp_path)
  out_dir = tmp_path / 'model_dir'
  path = config_util.save_pipeline_config(configs, str(out_dir))
  assert path == str(out_dir / 'pipeline.config')
  saved = config_util.get_configs_from_pipeline_file(path)
  assert saved['train_config'].batch_size == 32
  changed = config_util.merge_external_params_with_configs(
      configs, {'train_config.batch_size': 4})
  with pytest.raises(FileExistsError, match='overwrite=True'):
    config_util.save_pipeline_config(changed, str(out_dir))
  assert config_util.get_configs_from_pipeline_file(path)[
      'train_config'].batch_size == 32
  config_util.save_pipeline_config(
      config_util.create_pipeline_proto_from_configs(changed), str(out_dir),
      overwrite=True)
  assert config_util.get_configs_from_pipeline_file(path)[
      'train_config'].batch_size == 4
  with pytest.raises(ValueError, match='TrainEvalPipelineConfig'):
    config_util.save_pipeline_config('text', str(out_dir), overwrite=True)


# ------------------------------------------------------------ model helpers
def test_number_of_classes_and_spatial_size():
  model = model_pb2.DetectionModel()
  with pytest.raises(ValueError, match='no meta-architecture'):
    config_util.get_number_of_classes(model)
  model.center_net.num_classes = 7
  assert config_util.get_number_of_classes(model) == 7
  resizer = image_resizer_pb2.ImageResizer()
  with pytest.raises(ValueError, match='no resizer'):
    config_util.get_spatial_image_size(resizer)
  resizer.keep_aspect_ratio_resizer.max_dimension = 512
  assert config_util.get_spatial_image_size(resizer) == [-1, -1]
  resizer.keep_aspect_ratio_resizer.pad_to_max_dimension = True
  assert config_util.get_spatial_image_size(resizer) == [512, 512]
  resizer.fixed_shape_resizer.height = 64
  assert config_util.get_spatial_image_size(resizer) == [64, 300]
  resizer.identity_resizer.SetInParent()
  assert config_util.get_spatial_image_size(resizer) == [-1, -1]
  with pytest.raises(ValueError, match='ImageResizer'):
    config_util.get_spatial_image_size(model)


# ------------------------------------------------------------------ overrides
def test_merge_overrides(tmp_path):
  configs = _small_configs(tmp_path)
  new = config_util.merge_external_params_with_configs(configs, {
      'model.ssd.num_classes': 3,
      'train_config.batch_size': '8',
      'model.ssd.anchor_generator.ssd_anchor_generator.aspect_ratios':
          [1.0, 0.5],
      'model.ssd.anchor_generator.ssd_anchor_generator.'
      'reduce_boxes_in_lowest_layer': 'false',
      'model.ssd.post_processing.score_converter': 'SOFTMAX',
      'train_config.data_augmentation_options[1].random_horizontal_flip.'
      'probability': 0.25,
      'eval_input_configs[1].name': 'renamed',
      'eval_input_config.sample_1_of_n_examples': 5,
      'model.ssd.image_resizer': 'fixed_shape_resizer { height: 64 }',
      'model.ssd.box_coder.mean_stddev_box_coder': '',
      'export_config.input_shape': '1,64,64,3',
      'train_steps': 7,
      'label_map_path': 'other.pbtxt',
      'eval_input_path': 'c.tfrecord',
      'train_config.fine_tune_checkpoint': None,  # Skipped.
  })
  ssd = new['model'].ssd
  assert ssd.num_classes == 3
  assert new['train_config'].batch_size == 8
  anchors = ssd.anchor_generator.ssd_anchor_generator
  assert list(anchors.aspect_ratios) == [1.0, 0.5]
  assert anchors.num_layers == 4 and not anchors.reduce_boxes_in_lowest_layer
  assert ssd.post_processing.score_converter == (
      ssd.post_processing.SOFTMAX)
  flip = new['train_config'].data_augmentation_options[1]
  assert flip.random_horizontal_flip.probability == pytest.approx(0.25)
  assert [r.name for r in new['eval_input_configs']] == ['a', 'renamed']
  assert [r.sample_1_of_n_examples for r in new['eval_input_configs']] == [
      5, 5]
  assert [r.label_map_path for r in new['eval_input_configs']] == [
      'other.pbtxt', 'other.pbtxt']
  assert new['train_input_config'].label_map_path == 'other.pbtxt'
  assert list(new['eval_input_config'].tf_record_input_reader
              .input_path) == ['c.tfrecord']
  assert new['eval_input_config'] is new['eval_input_configs'][0]
  assert ssd.image_resizer.fixed_shape_resizer.height == 64
  assert ssd.image_resizer.fixed_shape_resizer.width == 300  # Replaced.
  assert ssd.box_coder.WhichOneof('box_coder_oneof') == (
      'mean_stddev_box_coder')
  assert list(new['export_config'].input_shape) == [1, 64, 64, 3]
  assert new['train_config'].num_steps == 7
  assert not new['train_config'].HasField('fine_tune_checkpoint')
  # The input dict is unchanged.
  assert configs['model'].ssd.num_classes == 10
  assert configs['train_config'].batch_size == 32
  assert configs['eval_input_configs'][1].name == 'b'


def test_num_classes_shortcut_follows_meta_architecture(tmp_path):
  configs = _small_configs(tmp_path)
  new = config_util.merge_external_params_with_configs(
      configs, {'num_classes': 4, 'batch_size': 2})
  assert new['model'].ssd.num_classes == 4
  assert new['train_config'].batch_size == 2


@pytest.mark.parametrize('key,value,match', [
    ('model.ssd.num_clases', 3,
     r'model\.ssd\.num_clases: .*"od_meta\.protos\.Ssd" has no field named '
     r'"num_clases"\. Did you mean "num_classes"\?'),
    ('modle.ssd.num_classes', 3, r'unknown config key "modle"'),
    ('model.faster_rcnn.num_classes', 3,
     r'oneof "model" .* set to "ssd", not "faster_rcnn"'),
    ('train_config.batch_size', 'eight',
     r'train_config\.batch_size: bad value for field '
     r'od_meta\.protos\.TrainConfig\.batch_size'),
    ('train_config.batch_size', 2.5, r'not an integer'),
    ('train_config.batch_size', True, r'not an integer'),
    ('model.ssd.post_processing.score_converter', 'SOFTMAXX',
     r"'SOFTMAXX' is not one of"),
    ('train_config.batch_size.x', 1, r'scalar field'),
    ('train_config.data_augmentation_options.random_horizontal_flip.'
     'probability', 0.1, r'repeated message field; give an index'),
    ('train_config.data_augmentation_options[5].random_horizontal_flip.'
     'probability', 0.1, r'index 5 out of range'),
    ('eval_input_configs[2].name', 'x', r'index 2 out of range'),
    ('eval_input_configs.name', 'x', r'give an index'),
    ('train_config', 1, r'give a field path'),
    ('model.ssd.image_resizer', 3, r'takes a message or a text-format'),
    ('model.ssd.num_classes[0]', 3, r'not a repeated field'),
])
def test_merge_errors_name_the_key(tmp_path, key, value, match):
  configs = _small_configs(tmp_path)
  with pytest.raises(ValueError, match=match):
    config_util.merge_external_params_with_configs(configs, {key: value})


def test_merge_message_text_errors_are_config_errors(tmp_path):
  configs = _small_configs(tmp_path)
  with pytest.raises(config_util.ConfigError,
                     match=r'<override model\.ssd\.image_resizer>:1:23: .*'
                           r'"heigt"\. Did you mean "height"\?'):
    config_util.merge_external_params_with_configs(configs, {
        'model.ssd.image_resizer': 'fixed_shape_resizer { heigt: 3 }'})


def test_merge_without_eval_readers(tmp_path):
  configs = config_util.get_configs_from_pipeline_text(
      'model { ssd { num_classes: 2 } }')
  assert 'eval_input_config' not in configs
  new = config_util.merge_external_params_with_configs(configs, {})
  assert new['eval_input_configs'] == []
  with pytest.raises(ValueError, match='no eval_input_reader'):
    config_util.merge_external_params_with_configs(
        configs, {'eval_input_config.name': 'x'})
