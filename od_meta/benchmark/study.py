"""The speed/accuracy/memory/training-time trade-off study.

Huang et al. 2017, "Speed/accuracy trade-offs for modern convolutional
object detectors", Sec. 3.5 (benchmarking procedure) and 4 (results), plus
training time as a third axis (the TTFNet paper's concern). For each
configuration (`sweep.Configuration`):

  1. resolve its pipeline config (base config + overrides + the study's
     training settings);
  2. train it with od_meta's own `train_loop` (checkpointing along the way),
     or take the checkpoint it was given;
  3. evaluate every checkpoint with `eval_loop.evaluate_checkpoint` (COCO
     mAP, mAP@.50IOU, mAP@.75IOU, mAP by object size), which gives the
     training curve and the steps / time to reach fractions of the final
     mAP (`training_curves.first_reaching`);
  4. measure batch-1 inference time, peak memory, FLOPs and parameters in a
     fresh child process (`measure.py` through `memory.run_child`).

A configuration that fails at any stage becomes a row with status 'failed'
and the error (stage, exception type and message), keeping what it had
measured before; the study goes on. `results.csv` / `results.json` are
rewritten after every configuration, so an interrupted study keeps its rows.
"""

import csv
import dataclasses
import gc
import json
import math
import os
import shutil
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

from od_meta.benchmark import memory
from od_meta.benchmark import sweep
from od_meta.benchmark import training_curves
from od_meta.utils import config_util

MAP = 'DetectionBoxes_Precision/mAP'
METRIC_COLUMNS = {
    'map': MAP,
    'map_50': 'DetectionBoxes_Precision/mAP@.50IOU',
    'map_75': 'DetectionBoxes_Precision/mAP@.75IOU',
    'map_small': 'DetectionBoxes_Precision/mAP (small)',
    'map_medium': 'DetectionBoxes_Precision/mAP (medium)',
    'map_large': 'DetectionBoxes_Precision/mAP (large)',
}

RUNS_DIR = 'runs'
RESULTS_CSV = 'results.csv'
RESULTS_JSON = 'results.json'

# Columns of results.csv, in order; `fraction_columns` adds the
# steps/time-to-fraction columns after them. Units in the names.
BASE_COLUMNS = (
    'name', 'status', 'error',
    'meta_architecture', 'feature_extractor', 'depth_multiplier',
    'input_height', 'input_width', 'num_proposals', 'output_stride',
    'map', 'map_50', 'map_75', 'map_small', 'map_medium', 'map_large',
    'time_total_ms', 'time_network_ms', 'time_postprocess_ms',
    'time_other_ms', 'postprocess_share', 'time_total_p90_ms',
    'timing_images', 'timing_warmup', 'jit_compiled',
    'memory_mb', 'peak_memory_mb', 'memory_kind',
    'gflops', 'gflops_network', 'num_parameters', 'num_trainable_parameters',
    'train_steps', 'train_batch_size', 'train_wall_time_s',
    'train_loop_time_s', 'train_steps_per_s', 'eval_images',
    'device', 'tf_version', 'cpu_load_1m', 'checkpoint', 'base_config',
    'axes',
    'overrides',
)


def fraction_key(fraction: float) -> str:
  """'50' for 0.5, '95' for 0.95, '99.5' for 0.995 (percent, no dot 0)."""
  percent = round(float(fraction) * 100, 4)
  return (f'{percent:g}').replace('.', 'p')


def fraction_columns(fractions: Sequence[float]) -> List[str]:
  """steps_to_<p>pct_final_map and time_to_<p>pct_final_map_s columns."""
  columns = []
  for f in fractions:
    key = fraction_key(f)
    columns += [f'steps_to_{key}pct_final_map',
                f'time_to_{key}pct_final_map_s']
  return columns


@dataclasses.dataclass
class StudySettings:
  """How the study runs.

  Attributes:
    output_dir: where runs/, results.*, plots and report.md go.
    train_steps: steps per configuration (None: each config's num_steps).
    train_batch_size: global training batch (None: the config's); a cosine
      schedule's learning rates follow it (see lr_scaling).
    num_checkpoints: checkpoints (= evaluated points of the training curve)
      per training run.
    eval_examples: eval images per evaluation (0: the whole eval input).
    num_images: timed images per configuration (the paper: 500).
    num_warmup: untimed calls before timing.
    map_fractions: fractions of the final mAP whose first reaching step and
      time are reported.
    checkpoints: dict configuration name -> checkpoint (prefix or model
      directory) to evaluate instead of training.
    measure_timeout_s: seconds before a measurement child is killed.
    overwrite: remove existing runs/<name> directories instead of refusing.
    lr_scaling: how a cosine schedule's learning rates follow a changed
      train_batch_size ('sqrt', 'linear', 'none'; `sweep.training_overrides`).
    jit_compile: time XLA-compiled inference (`measure --jit_compile`).
  """
  output_dir: str
  train_steps: Optional[int] = None
  train_batch_size: Optional[int] = None
  num_checkpoints: int = 4
  eval_examples: int = 0
  num_images: int = 500
  num_warmup: int = 10
  map_fractions: Sequence[float] = (0.5, 0.9)
  checkpoints: Dict[str, str] = dataclasses.field(default_factory=dict)
  measure_timeout_s: float = 900.0
  overwrite: bool = False
  lr_scaling: str = 'sqrt'
  jit_compile: bool = False

  def validate(self):
    """Raises ValueError naming the bad setting."""
    if not self.output_dir:
      raise ValueError('output_dir must be set')
    for name in ('train_steps', 'train_batch_size'):
      value = getattr(self, name)
      if value is not None and int(value) < 1:
        raise ValueError(f'{name} must be >= 1, got {value}')
    if int(self.num_checkpoints) < 1:
      raise ValueError(f'num_checkpoints must be >= 1, got '
                       f'{self.num_checkpoints}')
    if int(self.num_images) < 1:
      raise ValueError(f'num_images must be >= 1, got {self.num_images}')
    if int(self.num_warmup) < 0 or int(self.eval_examples) < 0:
      raise ValueError('num_warmup and eval_examples must be >= 0')
    if self.lr_scaling not in sweep.LR_SCALINGS:
      raise ValueError(f'lr_scaling must be one of {sweep.LR_SCALINGS}, got '
                       f'{self.lr_scaling!r}')
    for f in self.map_fractions:
      if not 0.0 < float(f) <= 1.0:
        raise ValueError(f'map_fractions must be in (0, 1], got {f}')


def parse_checkpoints(entries: Sequence[str],
                      names: Sequence[str]) -> Dict[str, str]:
  """`--checkpoints` entries -> {configuration name: checkpoint}.

  Entries are either all `name=path` or all bare paths, one per
  configuration in order.

  Raises:
    ValueError: on a mix of both forms, an unknown name, or a count of bare
      paths different from the number of configurations.
  """
  entries = [e for e in (entries or []) if e]
  if not entries:
    return {}
  named = ['=' in e for e in entries]
  if any(named) and not all(named):
    raise ValueError('--checkpoints: give either all name=path entries or '
                     'only paths (one per configuration, in order)')
  if all(named):
    result = {}
    for entry in entries:
      name, path = entry.split('=', 1)
      if name not in names:
        raise ValueError(f'--checkpoints: no configuration named {name!r} '
                         f'(configurations: {list(names)})')
      result[name] = path
    return result
  if len(entries) != len(names):
    raise ValueError(f'--checkpoints: {len(entries)} paths for '
                     f'{len(names)} configurations; give one per '
                     'configuration or use name=path')
  return dict(zip(names, entries))


def _finite(value):
  return (value is not None and isinstance(value, (int, float)) and
          math.isfinite(value))


def _metric(metrics, key):
  """A COCO metric, None when missing or -1 (no groundtruth of that size)."""
  value = metrics.get(key)
  if value is None:
    return None
  value = float(value)
  return None if value < 0 or not math.isfinite(value) else value


def _error_text(stage, error):
  message = str(error).strip().splitlines()
  first = message[0] if message else ''
  if len(first) > 400:
    first = first[:400] + '...'
  return f'{stage}: {type(error).__name__}: {first}'


def _resolve_checkpoint(path):
  """A checkpoint prefix from a prefix or a directory (its newest)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise ValueError(f'checkpoint directory {path!r} holds no checkpoint')
    return latest
  if not tf.io.gfile.exists(path + '.index'):
    raise ValueError(f'checkpoint {path!r} does not exist (no .index file)')
  return path


def _new_row(configuration: sweep.Configuration, fractions):
  row = {c: None for c in BASE_COLUMNS}
  row.update({c: None for c in fraction_columns(fractions)})
  row.update({
      'name': configuration.name, 'status': 'ok', 'error': '',
      'base_config': configuration.base_config,
      'axes': dict(configuration.axes),
      'overrides': dict(configuration.overrides),
      'curve': [],
  })
  return row


class Study:
  """Runs configurations one by one and writes results.csv / results.json.

  Args:
    configurations: list of `sweep.Configuration` (unique names).
    settings: a `StudySettings`.
    print_fn: where progress lines go.

  Raises:
    ValueError: on bad settings, or (unless settings.overwrite) existing
      non-empty runs/<name> directories of configurations to train.
  """

  def __init__(self, configurations: Sequence[sweep.Configuration],
               settings: StudySettings, print_fn: Callable = print):
    settings.validate()
    self.configurations = list(configurations)
    self.settings = settings
    self.print_fn = print_fn
    self.rows: List[Dict[str, Any]] = []
    self.settings_extra: Dict[str, Any] = {}
    self.columns = list(BASE_COLUMNS) + fraction_columns(
        settings.map_fractions)
    self.runs_dir = os.path.join(settings.output_dir, RUNS_DIR)
    existing = []
    for c in self.configurations:
      model_dir = os.path.join(self.runs_dir, c.name)
      if os.path.isdir(model_dir) and os.listdir(model_dir):
        existing.append(model_dir)
    if existing and not settings.overwrite:
      raise ValueError(
          f'{len(existing)} run directories already exist ({existing[:3]}'
          f'{"..." if len(existing) > 3 else ""}); choose another '
          '--output_dir or pass --overwrite to replace them')
    for model_dir in existing:
      shutil.rmtree(model_dir)

  def settings_dict(self):
    """The settings as a JSON-ready dict (plus wall_time_s once known)."""
    data = _settings_dict(self.settings)
    data.update(self.settings_extra)
    return data

  def write_results(self):
    """Writes results.csv / results.json of the rows so far."""
    return write_results(self.rows, self.settings.output_dir, self.columns,
                         self.settings_dict())

  # -------------------------------------------------------------- running
  def run(self) -> List[Dict[str, Any]]:
    """Runs every configuration; returns the rows (also written to disk)."""
    os.makedirs(self.settings.output_dir, exist_ok=True)
    total = len(self.configurations)
    for index, configuration in enumerate(self.configurations, 1):
      start = time.time()
      row = self.run_configuration(configuration)
      self.rows.append(row)
      self.write_results()
      self.print_fn(progress_line(row, index, total, time.time() - start))
    return self.rows

  def run_configuration(self, configuration: sweep.Configuration
                        ) -> Dict[str, Any]:
    """Trains/evaluates/measures one configuration; never raises."""
    settings = self.settings
    row = _new_row(configuration, settings.map_fractions)
    stage = 'config'
    try:
      configs = self._resolve(configuration, row)
      model_dir = os.path.join(self.runs_dir, configuration.name)
      os.makedirs(model_dir, exist_ok=True)
      checkpoint = (settings.checkpoints.get(configuration.name) or
                    configuration.checkpoint)
      stage = 'train'
      stage_start = time.time()
      if checkpoint:
        checkpoint = _resolve_checkpoint(checkpoint)
        config_util.save_pipeline_config(configs, model_dir, overwrite=True)
        points = [(None, checkpoint, None)]
      else:
        points = self._train(configs, model_dir, row)
      row['stage_times_s'] = {'train': time.time() - stage_start}
      stage = 'eval'
      stage_start = time.time()
      self._evaluate(configs, model_dir, points, row)
      row['checkpoint'] = points[-1][1]
      row['stage_times_s']['eval'] = time.time() - stage_start
      stage = 'measure'
      stage_start = time.time()
      self._measure(model_dir, row['checkpoint'], row)
      row['stage_times_s']['measure'] = time.time() - stage_start
    except Exception as e:  # pylint: disable=broad-except
      row['status'] = 'failed'
      row['error'] = _error_text(stage, e)
      row['traceback'] = traceback.format_exc()[-4000:]
    finally:
      _release_models()
    return row

  def _resolve(self, configuration, row):
    settings = self.settings
    configs = sweep.resolve_configs(configuration)
    training = sweep.training_overrides(
        configs, num_steps=settings.train_steps,
        batch_size=settings.train_batch_size,
        num_checkpoints=settings.num_checkpoints,
        eval_examples=settings.eval_examples,
        lr_scaling=settings.lr_scaling)
    configs = config_util.merge_external_params_with_configs(configs,
                                                             training)
    row.update(sweep.describe_configs(configs))
    row['train_steps'] = int(configs['train_config'].num_steps)
    row['train_batch_size'] = int(configs['train_config'].batch_size)
    row['eval_images'] = int(configs['eval_config'].num_examples) or None
    row['study_overrides'] = training
    return configs

  def _train(self, configs, model_dir, row):
    """Trains; returns [(step, checkpoint, wall seconds since start)]."""
    # pylint: disable=g-import-not-at-top
    from od_meta.training import train_loop
    # pylint: enable=g-import-not-at-top
    steps = row['train_steps']
    start = time.time()
    result = train_loop.train_loop(
        configs, model_dir, record_summaries=False,
        log_every_n=max(1, steps // 4),
        print_fn=lambda line: self.print_fn(f'  [{row["name"]}] {line}'))
    row['train_wall_time_s'] = time.time() - start
    row['train_loop_time_s'] = result.wall_time_s
    row['train_steps_per_s'] = (result.steps_run /
                                max(result.wall_time_s, 1e-9))
    return training_curves.checkpoint_times(model_dir, start)

  def _evaluate(self, configs, model_dir, points, row):
    """Evaluates each checkpoint; fills the metrics, curve and fractions."""
    # pylint: disable=g-import-not-at-top
    from od_meta.eval import eval_loop
    # pylint: enable=g-import-not-at-top
    model, input_fn = eval_loop.build_eval_model(configs)
    curve = []
    metrics = {}
    for step, checkpoint, wall in points:
      step_read, metrics = eval_loop.evaluate_checkpoint(
          configs, checkpoint, model_dir, detection_model=model,
          input_fn=input_fn, print_fn=lambda *a, **k: None)
      curve.append({'step': step if step is not None else step_read,
                    'wall_time_s': wall,
                    'map': _metric(metrics, MAP),
                    'map_50': _metric(metrics, METRIC_COLUMNS['map_50'])})
    for column, key in METRIC_COLUMNS.items():
      row[column] = _metric(metrics, key)
    row['curve'] = curve
    final = row['map']
    timed = [p for p in curve if p['wall_time_s'] is not None]
    if not timed or not _finite(final) or final <= 0:
      return
    points = [training_curves.CurvePoint(
        p['step'], p['wall_time_s'],
        p['map'] if p['map'] is not None else float('nan')) for p in timed]
    for fraction in self.settings.map_fractions:
      key = fraction_key(fraction)
      reached = training_curves.first_reaching(points, fraction * final)
      if reached is not None:
        row[f'steps_to_{key}pct_final_map'] = reached.step
        row[f'time_to_{key}pct_final_map_s'] = reached.wall_time_s

  def _measure(self, model_dir, checkpoint, row):
    settings = self.settings
    pipeline_config = os.path.join(model_dir,
                                   config_util.PIPELINE_CONFIG_NAME)
    result = memory.run_child(
        'od_meta.benchmark.measure',
        [f'--pipeline_config={pipeline_config}',
         f'--checkpoint={checkpoint}',
         f'--num_images={settings.num_images}',
         f'--num_warmup={settings.num_warmup}',
         f'--jit_compile={str(bool(settings.jit_compile)).lower()}'],
        timeout_s=settings.measure_timeout_s)
    row['measurement'] = result
    fill_measurement(row, result)


def _release_models():
  """Frees the models of a finished configuration (Keras state, garbage)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.keras.backend.clear_session()
  except Exception:  # pylint: disable=broad-except
    pass
  gc.collect()


def fill_measurement(row: Dict[str, Any], result: Dict[str, Any]):
  """Copies a `measure.py` result into the row's columns (ms, MB, GFLOPs)."""
  timing = result.get('timing', {})
  total = timing.get('total', {})
  network = timing.get('network', {})
  post = timing.get('postprocess', {})
  row['time_total_ms'] = total.get('median_ms')
  row['time_total_p90_ms'] = total.get('p90_ms')
  row['time_network_ms'] = network.get('median_ms')
  row['time_postprocess_ms'] = post.get('median_ms')
  if _finite(row['time_total_ms']) and _finite(row['time_network_ms']):
    other = row['time_total_ms'] - row['time_network_ms']
    if _finite(row['time_postprocess_ms']):
      other -= row['time_postprocess_ms']
    row['time_other_ms'] = max(other, 0.0)
    if _finite(row['time_postprocess_ms']) and row['time_total_ms'] > 0:
      row['postprocess_share'] = min(
          row['time_postprocess_ms'] / row['time_total_ms'], 1.0)
  row['timing_images'] = total.get('num_timed')
  row['timing_warmup'] = total.get('num_warmup')
  jit = result.get('jit_compile') or {}
  if jit.get('requested'):
    # Which timed functions XLA compiled, e.g. 'network' or 'none'.
    compiled = [name for name, status in sorted(jit.get('functions',
                                                        {}).items())
                if status.get('compiled')]
    row['jit_compiled'] = '+'.join(compiled) or 'none'
  mem = result.get('memory', {})
  mib = 1024.0 * 1024.0
  row['memory_kind'] = mem.get('kind')
  if mem.get('kind') == 'gpu_allocator_peak' and mem.get('gpu_peak_bytes'):
    row['memory_mb'] = mem['gpu_peak_bytes'] / mib
    row['peak_memory_mb'] = mem['gpu_peak_bytes'] / mib
  elif mem.get('peak_rss_bytes'):
    row['peak_memory_mb'] = mem['peak_rss_bytes'] / mib
    if mem.get('rss_baseline_bytes'):
      row['memory_mb'] = (mem['peak_rss_bytes'] -
                          mem['rss_baseline_bytes']) / mib
  flops = result.get('flops', {})
  if flops.get('total_flops') is not None:
    row['gflops'] = flops['total_flops'] / 1e9
  if flops.get('network_flops') is not None:
    row['gflops_network'] = flops['network_flops'] / 1e9
  row['num_parameters'] = flops.get('num_parameters')
  row['num_trainable_parameters'] = flops.get('num_trainable_parameters')
  row['device'] = result.get('device')
  row['tf_version'] = result.get('tf_version')
  row['cpu_load_1m'] = result.get('load_average_1m')
  row['num_cpus'] = result.get('num_cpus')


def _fmt(value, spec):
  return format(value, spec) if _finite(value) else '-'


def progress_line(row, index, total, seconds):
  """One line per configuration: its main figures, or its error."""
  head = f'[{index}/{total}] {row["name"]}'
  if row['status'] != 'ok' and not _finite(row.get('map')):
    return f'{head}: FAILED after {seconds:.0f} s: {row["error"]}'
  text = (f'{head}: mAP {_fmt(row["map"], ".3f")} '
          f'mAP@.5 {_fmt(row["map_50"], ".3f")} | '
          f'{_fmt(row["time_total_ms"], ".1f")} ms/img '
          f'(net {_fmt(row["time_network_ms"], ".1f")}, post '
          f'{_fmt(row["time_postprocess_ms"], ".1f")}) | '
          f'mem {_fmt(row["memory_mb"], ".0f")} MB | '
          f'{_fmt(row["gflops"], ".3f")} GFLOPs | '
          f'train {_fmt(row["train_wall_time_s"], ".0f")} s | '
          f'{seconds:.0f} s')
  if row['status'] != 'ok':
    text += f' | FAILED: {row["error"]}'
  return text


# ------------------------------------------------------------- writing
def _csv_value(value):
  if value is None:
    return ''
  if isinstance(value, (dict, list)):
    return json.dumps(value, sort_keys=True)
  if isinstance(value, float):
    return f'{value:.6g}'
  return value


def write_results(rows: Sequence[Dict[str, Any]], output_dir: str,
                  columns: Sequence[str], settings: Optional[dict] = None):
  """Writes results.csv (the columns) and results.json (everything).

  Returns:
    (csv path, json path).
  """
  os.makedirs(output_dir, exist_ok=True)
  csv_path = os.path.join(output_dir, RESULTS_CSV)
  json_path = os.path.join(output_dir, RESULTS_JSON)
  with open(csv_path + '.tmp', 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow([_csv_value(row.get(c)) for c in columns])
  os.replace(csv_path + '.tmp', csv_path)
  payload = {'columns': list(columns), 'settings': settings or {},
             'rows': list(rows)}
  with open(json_path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(payload, f, indent=1, default=str)
  os.replace(json_path + '.tmp', json_path)
  return csv_path, json_path


def _settings_dict(settings):
  data = dataclasses.asdict(settings)
  data['map_fractions'] = list(settings.map_fractions)
  return data



def write_plots_and_report(rows: Sequence[Dict[str, Any]], output_dir: str,
                           settings: Dict[str, Any],
                           wall_time_s: Optional[float] = None
                           ) -> Dict[str, Any]:
  """Draws the plots and writes report.md of finished rows.

  Returns:
    dict with 'report', 'plots' (name -> path or None) and 'findings'.
  """
  # pylint: disable=g-import-not-at-top
  from od_meta.benchmark import plots
  from od_meta.benchmark import report
  # pylint: enable=g-import-not-at-top
  plot_paths = plots.make_all_plots(rows, output_dir)
  findings = report.analyze(rows)
  report_path = report.write_report(
      os.path.join(output_dir, 'report.md'), rows, plot_paths=plot_paths,
      findings=findings,
      fraction_columns=fraction_columns(settings.get('map_fractions', ())),
      settings=settings, wall_time_s=wall_time_s)
  return {'report': report_path, 'plots': plot_paths, 'findings': findings}


def rerender(output_dir: str) -> Dict[str, Any]:
  """Rewrites the plots and report.md from output_dir/results.json.

  For changing the analysis without re-running the study; the study's wall
  time is kept when results.json recorded it.

  Raises:
    FileNotFoundError: if there is no results.json.
    ValueError: if it is not a study's results.
  """
  path = os.path.join(output_dir, RESULTS_JSON)
  with open(path, encoding='utf-8') as f:
    payload = json.load(f)
  if not isinstance(payload, dict) or 'rows' not in payload:
    raise ValueError(f'{path} is not a study result (no "rows")')
  settings = payload.get('settings') or {}
  result = write_plots_and_report(payload['rows'], output_dir, settings,
                                  settings.get('wall_time_s'))
  result['rows'] = payload['rows']
  return result


def run_study(configurations: Sequence[sweep.Configuration],
              settings: StudySettings,
              print_fn: Callable = print) -> Dict[str, Any]:
  """Runs the study, then writes the plots and report.md.

  Returns:
    dict with 'rows', 'results_csv', 'results_json', 'report', 'plots'
    (name -> path or None) and 'wall_time_s'.

  Raises:
    ValueError: as `Study` (bad settings, existing run directories).
  """
  start = time.time()
  study = Study(configurations, settings, print_fn=print_fn)
  print_fn(f'Study of {len(study.configurations)} configurations -> '
           f'{settings.output_dir}')
  rows = study.run()
  wall = time.time() - start
  study.settings_extra = {'wall_time_s': wall}
  csv_path, json_path = study.write_results()
  result = write_plots_and_report(rows, settings.output_dir,
                                  study.settings_dict(), wall)
  result.update({'rows': rows, 'results_csv': csv_path,
                 'results_json': json_path, 'wall_time_s': wall})
  return result
