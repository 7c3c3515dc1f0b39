"""Sweep files: the paper's axes as lists of overrides on base configs.

Huang et al. 2017 (Sec. 3.1-3.3) vary five things: meta-architecture,
feature extractor, input resolution, number of proposals and output stride.
A sweep file describes such a study without writing every pipeline config by
hand: each *axis* is a list of *values*; a value has a name, optional dotted
overrides (`config_util.merge_external_params_with_configs` keys), an
optional `base_config` and an optional `when` condition on earlier axes.
The configurations are the cartesian product of the axes, in axis order,
where an axis none of whose values applies to a combination is simply absent
from it (e.g. "number of proposals" exists only for Faster R-CNN / R-FCN).

JSON (`.json`) or YAML (`.yaml` / `.yml`); example::

    {
      "name": "digits_quick",
      "common_overrides": {"eval_config.num_visualizations": 0},
      "axes": [
        {"axis": "meta_architecture", "values": [
          {"name": "ssd",
           "base_config": "configs/ssd_mobilenet_v2_digits.config"},
          {"name": "faster_rcnn",
           "base_config": "configs/faster_rcnn_resnet50_digits.config"}]},
        {"axis": "resolution", "values": [
          {"name": "96", "when": {"meta_architecture": ["ssd"]},
           "overrides": {"model.{arch}.image_resizer":
                         "fixed_shape_resizer { height: 96 width: 96 }"}}]},
        {"axis": "proposals", "values": [
          {"name": "p10", "when": {"meta_architecture": "faster_rcnn"},
           "overrides": {"model.faster_rcnn.first_stage_max_proposals": 10}}]}
      ],
      "exclude": [{"meta_architecture": "ssd", "resolution": "96"}],
      "configurations": [
        {"name": "extra", "base_config": "configs/x.config", "overrides": {}}]
    }

Rules:
  * A configuration's name is its value names joined by '-' (names use
    `[A-Za-z0-9_.+]`); names must be unique.
  * `{arch}` in an override key is replaced by the base config's `model`
    oneof (ssd, center_net, ttfnet, faster_rcnn, ...) when the config is
    resolved.
  * Within an axis, value names are unique, except that one name may serve
    values with different `when` conditions (e.g. 'mobilenet_v2' for SSD
    and for CenterNet).
  * Exactly one base config per configuration: from the top-level
    `base_config` or from one value (two values giving one is an error).
  * Overrides apply in order: common, then each axis; two axes setting the
    same key to different values is an error.
  * `when` may only refer to earlier axes; `exclude` entries drop the
    configurations whose axes match all their entries.

Errors are `ValueError`s naming the sweep file, the axis and the value (or
the field) at fault. `expand_sweep` is pure Python; `resolve_configs`,
`describe_configs` and `training_overrides` manipulate pipeline configs.
"""

import dataclasses
import json
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence

from od_meta.utils import config_util

ARCH_PLACEHOLDER = '{arch}'
SWEEP_EXTENSIONS = ('.json', '.yaml', '.yml')

_NAME = re.compile(r'^[A-Za-z0-9_.+]+$')
_TOP_KEYS = {'name', 'description', 'base_config', 'common_overrides', 'axes',
             'exclude', 'configurations'}
_AXIS_KEYS = {'axis', 'values', 'description'}
_VALUE_KEYS = {'name', 'overrides', 'base_config', 'when', 'description'}
_CONFIGURATION_KEYS = {'name', 'base_config', 'overrides', 'axes',
                       'checkpoint'}

# Meta-architectures with a second stage fed by region proposals.
TWO_STAGE = ('faster_rcnn', 'rfcn')


@dataclasses.dataclass
class Configuration:
  """One configuration of a study.

  Attributes:
    name: unique name (file-system safe): the axis value names joined by '-'.
    base_config: path of the pipeline config the overrides apply to.
    overrides: ordered dict of dotted override keys -> values (keys may hold
      `{arch}`).
    axes: dict axis name -> value name, for the axes present.
    checkpoint: optional checkpoint to evaluate instead of training.
    override_sources: dict override key -> where it came from ('common',
      'axis <a> value <v>' or 'configuration <n>'), for error messages.
  """
  name: str
  base_config: str
  overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
  axes: Dict[str, str] = dataclasses.field(default_factory=dict)
  checkpoint: Optional[str] = None
  override_sources: Dict[str, str] = dataclasses.field(default_factory=dict)


def is_sweep_file(path: str) -> bool:
  """Whether `path` names a sweep file (by extension; see module doc)."""
  return os.fspath(path).lower().endswith(SWEEP_EXTENSIONS)


def load_sweep(path: str) -> Dict[str, Any]:
  """Reads a JSON or YAML sweep file into a dict.

  Raises:
    FileNotFoundError: if the file does not exist.
    ValueError: on a parse error or a top level that is not a mapping (the
      message names the file).
  """
  path = os.fspath(path)
  with open(path, encoding='utf-8') as f:
    text = f.read()
  try:
    if path.lower().endswith('.json'):
      spec = json.loads(text)
    else:
      import yaml  # pylint: disable=g-import-not-at-top
      spec = yaml.safe_load(text)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{path}: cannot parse the sweep file: {e}') from None
  if not isinstance(spec, dict):
    raise ValueError(f'{path}: a sweep file must hold a mapping at the top '
                     f'level, got {type(spec).__name__}')
  return spec


def _check_keys(where, mapping, allowed):
  if not isinstance(mapping, dict):
    raise ValueError(f'{where}: expected a mapping, got '
                     f'{type(mapping).__name__}')
  unknown = sorted(set(mapping) - allowed)
  if unknown:
    raise ValueError(f'{where}: unknown key(s) {unknown}; allowed: '
                     f'{sorted(allowed)}')


def _check_name(where, name):
  if not isinstance(name, (str, int, float)) or isinstance(name, bool):
    raise ValueError(f'{where}: "name" must be a string, got {name!r}')
  name = str(name)
  if not _NAME.match(name):
    raise ValueError(f'{where}: name {name!r} must match [A-Za-z0-9_.+]+ '
                     "(it becomes part of a directory name; '-' joins axes)")
  return name


def _check_overrides(where, overrides):
  if overrides is None:
    return {}
  if not isinstance(overrides, dict):
    raise ValueError(f'{where}: "overrides" must be a mapping of dotted '
                     f'config paths to values, got {type(overrides).__name__}')
  for key in overrides:
    if not isinstance(key, str) or not key:
      raise ValueError(f'{where}: override keys must be non-empty strings, '
                       f'got {key!r}')
  return dict(overrides)


def _resolve_path(path, sweep_dir, where):
  """base_config path: absolute, else cwd-relative, else sweep-relative."""
  if not isinstance(path, str) or not path:
    raise ValueError(f'{where}: "base_config" must be a non-empty path')
  if os.path.isabs(path) or os.path.exists(path) or sweep_dir is None:
    return path
  candidate = os.path.join(sweep_dir, path)
  return candidate if os.path.exists(candidate) else path


def _as_name_list(where, value):
  if isinstance(value, (str, int, float)) and not isinstance(value, bool):
    return [str(value)]
  if isinstance(value, (list, tuple)) and all(
      isinstance(v, (str, int, float)) and not isinstance(v, bool)
      for v in value):
    return [str(v) for v in value]
  raise ValueError(f'{where}: expected a value name or a list of them, got '
                   f'{value!r}')


def _parse_axes(spec, where, sweep_dir):
  """Validates `axes`; returns list of (axis name, [value dicts])."""
  axes = spec.get('axes', [])
  if not isinstance(axes, list):
    raise ValueError(f'{where}: "axes" must be a list of '
                     '{"axis": name, "values": [...]} mappings')
  parsed = []
  seen_axes = {}
  for a, axis in enumerate(axes):
    axis_where = f'{where}: axes[{a}]'
    _check_keys(axis_where, axis, _AXIS_KEYS)
    if 'axis' not in axis:
      raise ValueError(f'{axis_where}: missing "axis" (the axis name)')
    axis_name = _check_name(axis_where, axis['axis'])
    axis_where = f'{where}: axis "{axis_name}"'
    if axis_name in seen_axes:
      raise ValueError(f'{axis_where}: duplicate axis name')
    values = axis.get('values')
    if not isinstance(values, list) or not values:
      raise ValueError(f'{axis_where}: "values" must be a non-empty list')
    parsed_values = []
    seen_values = set()
    for v, value in enumerate(values):
      value_where = f'{axis_where} values[{v}]'
      _check_keys(value_where, value, _VALUE_KEYS)
      if 'name' not in value:
        raise ValueError(f'{value_where}: missing "name"')
      value_name = _check_name(value_where, value['name'])
      value_where = f'{axis_where} value "{value_name}"'
      when = value.get('when') or {}
      if not isinstance(when, dict):
        raise ValueError(f'{value_where}: "when" must map earlier axis names '
                         'to value names')
      conditions = {}
      for other, names in when.items():
        if other not in seen_axes:
          known = list(seen_axes)
          raise ValueError(
              f'{value_where}: "when" refers to axis "{other}", which is not '
              f'an earlier axis (earlier axes: {known})')
        names = _as_name_list(f'{value_where} when.{other}', names)
        unknown = sorted(set(names) - seen_axes[other])
        if unknown:
          raise ValueError(
              f'{value_where}: "when" names value(s) {unknown} that axis '
              f'"{other}" does not have ({sorted(seen_axes[other])})')
        conditions[other] = set(names)
      # One name may serve several values only under different conditions
      # (e.g. 'mobilenet_v2' for SSD and for CenterNet).
      signature = (value_name, tuple(sorted(
          (k, tuple(sorted(v))) for k, v in conditions.items())))
      if signature in seen_values:
        raise ValueError(f'{value_where}: duplicate value name (with the same '
                         '"when")')
      seen_values.add(signature)
      base = value.get('base_config')
      parsed_values.append({
          'name': value_name,
          'overrides': _check_overrides(value_where, value.get('overrides')),
          'base_config': (_resolve_path(base, sweep_dir, value_where)
                          if base is not None else None),
          'when': conditions,
      })
    seen_axes[axis_name] = {name for name, _ in seen_values}
    parsed.append((axis_name, parsed_values))
  return parsed


def _parse_excludes(spec, where, axes):
  excludes = spec.get('exclude', []) or []
  if not isinstance(excludes, list):
    raise ValueError(f'{where}: "exclude" must be a list of mappings')
  names = {axis: {v['name'] for v in values} for axis, values in axes}
  parsed = []
  for e, entry in enumerate(excludes):
    entry_where = f'{where}: exclude[{e}]'
    if not isinstance(entry, dict) or not entry:
      raise ValueError(f'{entry_where}: must be a non-empty mapping of axis '
                       'names to value names')
    conditions = {}
    for axis, values in entry.items():
      if axis not in names:
        raise ValueError(f'{entry_where}: unknown axis "{axis}" (axes: '
                         f'{list(names)})')
      values = _as_name_list(f'{entry_where}.{axis}', values)
      unknown = sorted(set(values) - names[axis])
      if unknown:
        raise ValueError(f'{entry_where}: axis "{axis}" has no value(s) '
                         f'{unknown}')
      conditions[axis] = set(values)
    parsed.append(conditions)
  return parsed


def _add_overrides(config, overrides, source, where, common_keys):
  for key, value in overrides.items():
    if key in config.overrides and key not in common_keys:
      if config.overrides[key] != value:
        raise ValueError(
            f'{where}: override "{key}" is set by both '
            f'{config.override_sources[key]} ({config.overrides[key]!r}) and '
            f'{source} ({value!r})')
    config.overrides[key] = value
    config.override_sources[key] = source
    common_keys.discard(key)


def expand_sweep(spec: Dict[str, Any], *, path: str = '<sweep>'
                 ) -> List[Configuration]:
  """Expands a sweep (dict from `load_sweep`) into configurations.

  Args:
    spec: the sweep mapping (module docstring).
    path: the sweep file, for messages and for resolving relative
      base_config paths.

  Returns:
    list of `Configuration`, axis combinations first (in axis order, the
    last axis varying fastest), then the explicit `configurations`.

  Raises:
    ValueError: naming the file, axis, value or key at fault: unknown keys,
      bad names, `when` on a later or unknown axis, duplicate names, no or
      two base configs, conflicting overrides, or no configuration at all.
  """
  where = os.fspath(path)
  _check_keys(where, spec, _TOP_KEYS)
  sweep_dir = (os.path.dirname(os.path.abspath(where))
               if os.path.exists(where) else None)
  common = _check_overrides(f'{where}: common_overrides',
                            spec.get('common_overrides'))
  top_base = spec.get('base_config')
  if top_base is not None:
    top_base = _resolve_path(top_base, sweep_dir, f'{where}: base_config')
  axes = _parse_axes(spec, where, sweep_dir)
  excludes = _parse_excludes(spec, where, axes)

  configurations = []
  # Partial combinations: list of [(axis, value dict)], grown axis by axis so
  # that `when` sees the earlier choices.
  partial = [[]] if axes else []
  for axis_name, values in axes:
    grown = []
    for combo in partial:
      chosen = {a: v['name'] for a, v in combo}
      applicable = [v for v in values
                    if all(chosen.get(a) in names
                           for a, names in v['when'].items())]
      if not applicable:
        grown.append(combo)  # The axis does not apply to this combination.
      else:
        grown.extend(combo + [(axis_name, v)] for v in applicable)
    partial = grown
  for combo in partial:
    chosen = {a: v['name'] for a, v in combo}
    if any(all(chosen.get(a) in names for a, names in ex.items())
           for ex in excludes):
      continue
    name = '-'.join(v['name'] for _, v in combo)
    combo_where = f'{where}: configuration "{name}"'
    bases = [(a, v) for a, v in combo if v['base_config'] is not None]
    if len(bases) > 1:
      raise ValueError(
          f'{combo_where}: base_config given by both axis "{bases[0][0]}" '
          f'value "{bases[0][1]["name"]}" and axis "{bases[1][0]}" value '
          f'"{bases[1][1]["name"]}"; give it on one axis only')
    base = bases[0][1]['base_config'] if bases else top_base
    if base is None:
      raise ValueError(f'{combo_where}: no base_config (give one at the top '
                       'level or on an axis value)')
    config = Configuration(name=name, base_config=base, axes=chosen)
    common_keys = set(common)
    _add_overrides(config, common, 'common_overrides', combo_where, set())
    for axis_name, value in combo:
      _add_overrides(config, value['overrides'],
                     f'axis "{axis_name}" value "{value["name"]}"',
                     combo_where, common_keys)
    configurations.append(config)

  explicit = spec.get('configurations', []) or []
  if not isinstance(explicit, list):
    raise ValueError(f'{where}: "configurations" must be a list')
  for c, entry in enumerate(explicit):
    entry_where = f'{where}: configurations[{c}]'
    _check_keys(entry_where, entry, _CONFIGURATION_KEYS)
    if 'name' not in entry:
      raise ValueError(f'{entry_where}: missing "name"')
    name = _check_name(entry_where, entry['name'])
    entry_where = f'{where}: configuration "{name}"'
    base = entry.get('base_config', top_base)
    if base is None:
      raise ValueError(f'{entry_where}: no base_config')
    base = _resolve_path(base, sweep_dir, entry_where)
    axes_labels = entry.get('axes') or {}
    if not isinstance(axes_labels, dict):
      raise ValueError(f'{entry_where}: "axes" must map axis names to value '
                       'names')
    config = Configuration(
        name=name, base_config=base,
        axes={str(k): str(v) for k, v in axes_labels.items()},
        checkpoint=entry.get('checkpoint'))
    _add_overrides(config, common, 'common_overrides', entry_where, set())
    _add_overrides(config, _check_overrides(entry_where,
                                            entry.get('overrides')),
                   f'configuration "{name}"', entry_where, set(common))
    configurations.append(config)

  if not configurations:
    raise ValueError(f'{where}: the sweep defines no configuration (give '
                     '"axes" and/or "configurations")')
  _check_unique([c.name for c in configurations], where)
  return configurations


def _check_unique(names, where):
  seen = set()
  for name in names:
    if name in seen:
      raise ValueError(f'{where}: two configurations are named "{name}"; '
                       'give the values distinct names')
    seen.add(name)


def configurations_from_paths(paths: Sequence[str]) -> List[Configuration]:
  """Configurations from `--configs`: pipeline config files and sweeps.

  A sweep file (`is_sweep_file`) expands to its configurations; any other
  path is one configuration named after the file (without extension), with
  no overrides.

  Raises:
    ValueError: on an empty list, a sweep error, or duplicate names.
    FileNotFoundError: on a missing sweep file.
  """
  if not paths:
    raise ValueError('--configs: give at least one pipeline config or sweep '
                     'file')
  configurations = []
  for path in paths:
    if is_sweep_file(path):
      configurations.extend(expand_sweep(load_sweep(path), path=path))
    else:
      name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
      name = re.sub(r'[^A-Za-z0-9_.+-]', '_', name)
      configurations.append(Configuration(name=name,
                                          base_config=os.fspath(path)))
  _check_unique([c.name for c in configurations], '--configs')
  return configurations


# -------------------------------------------------- config manipulation
def resolve_configs(configuration: Configuration,
                    extra_overrides: Optional[Dict[str, Any]] = None):
  """Reads the base config and applies the overrides.

  `{arch}` in keys is replaced by the base config's meta-architecture.
  Overrides are applied source by source so that an error names where the
  bad key came from.

  Args:
    configuration: a `Configuration`.
    extra_overrides: applied last (e.g. the study's training settings).

  Returns:
    the configs dict (`config_util.get_configs_from_pipeline_file`).

  Raises:
    FileNotFoundError: if the base config does not exist.
    ValueError: (config_util.ConfigError on a parse error) naming the
      configuration, the axis/value that gave the override, and the field.
  """
  if not os.path.exists(configuration.base_config):
    raise FileNotFoundError(
        f'configuration "{configuration.name}": base_config '
        f'{configuration.base_config!r} does not exist')
  configs = config_util.get_configs_from_pipeline_file(
      configuration.base_config)
  arch = config_util.get_meta_architecture(configs['model'])
  groups = {}
  for key, value in configuration.overrides.items():
    source = configuration.override_sources.get(key, 'overrides')
    groups.setdefault(source, {})[key.replace(ARCH_PLACEHOLDER, arch)] = value
  if extra_overrides:
    groups.setdefault('study settings', {}).update(extra_overrides)
  for source, overrides in groups.items():
    try:
      configs = config_util.merge_external_params_with_configs(configs,
                                                               overrides)
    except ValueError as e:
      raise ValueError(f'configuration "{configuration.name}": {source}: '
                       f'{e}') from None
  return configs


def _short_extractor_name(type_name):
  name = type_name or ''
  for prefix in ('ssd_', 'faster_rcnn_', 'rfcn_'):
    if name.startswith(prefix):
      name = name[len(prefix):]
  if name.endswith('_keras'):
    name = name[:-len('_keras')]
  return name or 'unknown'


def describe_configs(configs) -> Dict[str, Any]:
  """The paper's axes as read from a resolved config.

  Returns:
    dict with 'meta_architecture' (the `model` oneof; 'rfcn' for a
    faster_rcnn model with an rfcn_box_predictor), 'feature_extractor'
    (the extractor type without 'ssd_' / 'faster_rcnn_' / '_keras'),
    'depth_multiplier' (float or None), 'input_height' / 'input_width'
    (pixels after resizing, None when not static), 'num_proposals'
    (proposals at inference of two-stage models: inference_max_proposals,
    or first_stage_max_proposals when it is 0; else None),
    'output_stride' (first_stage_features_stride of two-stage models, else
    None).

  Raises:
    ValueError: if the model has no meta-architecture.
  """
  model = configs['model']
  arch = config_util.get_meta_architecture(model)
  arch_config = getattr(model, arch)
  extractor = getattr(arch_config, 'feature_extractor', None)
  type_name = getattr(extractor, 'type', '') if extractor is not None else ''
  multiplier = None
  if extractor is not None and 'depth_multiplier' in (
      extractor.DESCRIPTOR.fields_by_name):
    multiplier = _round(extractor.depth_multiplier)
  height, width = config_util.get_spatial_image_size(arch_config.image_resizer)
  if height <= 0 or width <= 0:
    resizer = arch_config.image_resizer
    if resizer.WhichOneof('image_resizer_oneof') == (
        'keep_aspect_ratio_resizer'):
      height = width = int(resizer.keep_aspect_ratio_resizer.min_dimension)
    else:
      height = width = None
  proposals = stride = None
  if arch in TWO_STAGE:
    fields = arch_config.DESCRIPTOR.fields_by_name
    if 'first_stage_max_proposals' in fields:
      proposals = int(arch_config.first_stage_max_proposals)
    if getattr(arch_config, 'inference_max_proposals', 0):
      proposals = int(arch_config.inference_max_proposals)
    if 'second_stage_box_predictor' in fields and (
        arch_config.second_stage_box_predictor.WhichOneof(
            'box_predictor_oneof') == 'rfcn_box_predictor'):
      arch = 'rfcn'
    if extractor is not None and 'first_stage_features_stride' in (
        extractor.DESCRIPTOR.fields_by_name):
      stride = int(extractor.first_stage_features_stride)
  return {
      'meta_architecture': arch,
      'feature_extractor': _short_extractor_name(type_name),
      'depth_multiplier': multiplier,
      'input_height': int(height) if height else None,
      'input_width': int(width) if width else None,
      'num_proposals': proposals,
      'output_stride': stride,
  }


LR_SCALINGS = ('sqrt', 'linear', 'none')


def _round(value, digits=6):
  """float32 proto values printed without float32 noise (0.35, not 0.3499..)."""
  return float(f'{float(value):.{digits}g}')


def training_overrides(configs, *, num_steps: Optional[int] = None,
                       batch_size: Optional[int] = None,
                       num_checkpoints: Optional[int] = None,
                       eval_examples: Optional[int] = None,
                       lr_scaling: str = 'sqrt') -> Dict[str, Any]:
  """Dotted overrides that shorten training for a study.

  * num_steps: train_config.num_steps, and a cosine schedule's total_steps;
    its warmup is cut to at most a tenth of the steps.
  * batch_size: train_config.batch_size, scaling a cosine schedule's base
    and warmup learning rates with the batch ratio r = new / old:
    lr_scaling 'linear' multiplies them by r (Goyal et al. 2017), 'sqrt' by
    sqrt(r) (Krizhevsky 2014; the default, gentler for the short runs of a
    study), 'none' keeps them.
  * num_checkpoints: checkpoint_every_n = ceil(steps / num_checkpoints) and
    max_to_keep large enough to keep them all (the training curve).
  * eval_examples: eval_config.num_examples (0 = the whole eval input).

  Args:
    configs: the resolved configs dict (read only).

  Returns:
    dict of dotted keys -> values for `merge_external_params_with_configs`.

  Raises:
    ValueError: on a non-positive number or an unknown lr_scaling.
  """
  if lr_scaling not in LR_SCALINGS:
    raise ValueError(f'lr_scaling must be one of {LR_SCALINGS}, got '
                     f'{lr_scaling!r}')
  for name, value in (('num_steps', num_steps), ('batch_size', batch_size),
                      ('num_checkpoints', num_checkpoints)):
    if value is not None and int(value) < 1:
      raise ValueError(f'{name} must be >= 1, got {value}')
  if eval_examples is not None and int(eval_examples) < 0:
    raise ValueError(f'eval_examples must be >= 0, got {eval_examples}')
  train = configs['train_config']
  overrides = {}
  optimizer_name = train.optimizer.WhichOneof('optimizer')
  cosine = None
  prefix = None
  if optimizer_name:
    learning_rate = getattr(train.optimizer, optimizer_name).learning_rate
    if learning_rate.WhichOneof('learning_rate') == (
        'cosine_decay_learning_rate'):
      cosine = learning_rate.cosine_decay_learning_rate
      prefix = (f'train_config.optimizer.{optimizer_name}.learning_rate.'
                'cosine_decay_learning_rate.')
  steps = int(num_steps) if num_steps else int(train.num_steps)
  if num_steps:
    overrides['train_config.num_steps'] = steps
    if cosine is not None:
      overrides[prefix + 'total_steps'] = steps
      if cosine.warmup_steps > steps // 10:
        overrides[prefix + 'warmup_steps'] = steps // 10
      if cosine.hold_base_rate_steps > steps // 2:
        overrides[prefix + 'hold_base_rate_steps'] = 0
  if batch_size and int(batch_size) != train.batch_size:
    overrides['train_config.batch_size'] = int(batch_size)
    if cosine is not None and train.batch_size > 0 and lr_scaling != 'none':
      scale = int(batch_size) / train.batch_size
      if lr_scaling == 'sqrt':
        scale = math.sqrt(scale)
      overrides[prefix + 'learning_rate_base'] = _round(
          cosine.learning_rate_base * scale)
      overrides[prefix + 'warmup_learning_rate'] = _round(
          cosine.warmup_learning_rate * scale)
  if num_checkpoints and steps > 0:
    every = max(1, math.ceil(steps / int(num_checkpoints)))
    overrides['train_config.checkpoint_every_n'] = every
    overrides['train_config.max_to_keep'] = steps // every + 2
  if eval_examples is not None:
    overrides['eval_config.num_examples'] = int(eval_examples)
  return overrides

