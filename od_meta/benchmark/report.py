"""report.md of the trade-off study: table, plots and the paper's findings.

For each finding of Huang et al. 2017 that the study can check, the report
states the paper's claim, the verdict of our run ('shown', 'partly shown',
'not shown' or 'not testable in this run' when the run lacks the
configurations the finding needs) and the figures behind it:

  * fewer proposals save much time at little mAP cost (Sec. 4.1.6, Fig. 6);
  * SSD is less sensitive to the feature extractor than Faster R-CNN /
    R-FCN (Sec. 4.1.3, Fig. 3);
  * memory tracks time (Sec. 4.1.8, Fig. 9);
  * where the frontier's critical points lie (Sec. 4.1.2, Fig. 2);
  * input resolution: half the resolution is faster and less accurate
    (Sec. 3.3, 4.1.4-4.1.5; small-object mAP is shown alongside);
  * output stride 8 vs 16 (Sec. 3.1.3).

Pure Python on the study rows (dicts with `study.BASE_COLUMNS` keys); no
TensorFlow, no protos.
"""

import dataclasses
import math
import os
import statistics
from typing import Dict, List, Optional, Sequence

from od_meta.benchmark import pareto
from od_meta.benchmark import plots

SHOWN = 'shown'
PARTLY = 'partly shown'
NOT_SHOWN = 'not shown'
NOT_TESTABLE = 'not testable in this run'

# Thresholds of the verdicts (stated in the report).
PROPOSALS_MIN_TIME_SAVING = 0.20
PROPOSALS_MAX_MAP_LOSS = 0.15
STRONG_CORRELATION = 0.7
WEAK_CORRELATION = 0.4
# Below this COCO mAP a detector has barely learned: comparisons of
# accuracies rest on noise (the report says so).
MIN_MEANINGFUL_MAP = 0.05

_DESCRIPTIVE = ('meta_architecture', 'feature_extractor', 'depth_multiplier',
                'input_height', 'input_width', 'num_proposals',
                'output_stride')


@dataclasses.dataclass
class Finding:
  """One finding of the paper checked against our run.

  Attributes:
    key: short identifier ('proposals', 'extractor_sensitivity', ...).
    title: heading.
    paper: the paper's claim (with its section).
    verdict: SHOWN, PARTLY, NOT_SHOWN or NOT_TESTABLE.
    evidence: markdown text with our figures.
  """
  key: str
  title: str
  paper: str
  verdict: str
  evidence: str


def _finite(value):
  return (value is not None and isinstance(value, (int, float)) and
          not isinstance(value, bool) and math.isfinite(value))


def _ok(rows, *keys):
  return [r for r in rows if all(_finite(r.get(k)) for k in keys)]


def _ranks(values):
  """Ranks (1-based, ties get their average rank)."""
  order = sorted(range(len(values)), key=lambda i: values[i])
  ranks = [0.0] * len(values)
  i = 0
  while i < len(order):
    j = i
    while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
      j += 1
    for k in range(i, j + 1):
      ranks[order[k]] = (i + j) / 2.0 + 1.0
    i = j + 1
  return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
  """Pearson correlation, None with < 3 points or a constant series.

  Raises:
    ValueError: if the lengths differ.
  """
  if len(xs) != len(ys):
    raise ValueError(f'xs and ys differ in length: {len(xs)} vs {len(ys)}')
  if len(xs) < 3:
    return None
  mx, my = statistics.fmean(xs), statistics.fmean(ys)
  sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
  sxx = sum((x - mx) ** 2 for x in xs)
  syy = sum((y - my) ** 2 for y in ys)
  if sxx <= 0 or syy <= 0:
    return None
  return sxy / math.sqrt(sxx * syy)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
  """Spearman rank correlation (Pearson on average ranks); None as pearson."""
  if len(xs) != len(ys):
    raise ValueError(f'xs and ys differ in length: {len(xs)} vs {len(ys)}')
  return pearson(_ranks(list(xs)), _ranks(list(ys)))


def groups_varying(rows: Sequence[Dict], key: str) -> List[List[Dict]]:
  """Groups of rows equal in every descriptive field except `key`.

  Only groups with at least two distinct finite values of `key` are
  returned, each sorted by `key`.
  """
  groups = {}
  for row in rows:
    if not _finite(row.get(key)):
      continue
    ident = tuple(row.get(k) for k in _DESCRIPTIVE if k != key)
    if key == 'input_height':
      ident = tuple(row.get(k) for k in _DESCRIPTIVE
                    if k not in ('input_height', 'input_width'))
    groups.setdefault(ident, []).append(row)
  result = []
  for group in groups.values():
    if len({r[key] for r in group}) >= 2:
      result.append(sorted(group, key=lambda r: r[key]))
  return result


def _fmt(value, spec='.3f'):
  return format(value, spec) if _finite(value) else '-'


def _pct(value):
  return f'{value * 100:+.1f}%' if _finite(value) else '-'


def _noise_note(*rows):
  """' (caution: ...)' when a compared row's mAP is at noise level."""
  if any(_finite(r.get('map')) and r['map'] < MIN_MEANINGFUL_MAP
         for r in rows):
    return f' (caution: mAP below {MIN_MEANINGFUL_MAP}, noise level)'
  return ''


def _two_stage_status(rows):
  """Text about two-stage rows that failed (for 'not testable' reasons)."""
  two_stage = [r for r in rows
               if r.get('meta_architecture') in plots.TWO_STAGE]
  failed = [r for r in two_stage if r.get('status') != 'ok']
  if not two_stage:
    return 'the run has no Faster R-CNN / R-FCN configuration'
  if not failed:
    extractors = sorted({str(r.get('feature_extractor')) for r in two_stage})
    return ('its Faster R-CNN / R-FCN configurations use only '
            f'{", ".join(extractors)}')
  return ('its Faster R-CNN / R-FCN configurations failed ('
          f'{failed[0]["name"]}: {failed[0].get("error", "")})')


# --------------------------------------------------------------- findings
def finding_proposals(rows):
  paper = ('Sec. 4.1.6 / Fig. 6: cutting Faster R-CNN / R-FCN proposals from '
           '300 to ~50 saves much time (e.g. 3x for Inception-ResNet) at a '
           'small mAP cost (a few percent).')
  title = 'Fewer proposals save much time at little mAP cost'
  groups = [g for g in groups_varying(_ok(rows, 'map', 'time_total_ms'),
                                      'num_proposals')
            if g[0].get('meta_architecture') in plots.TWO_STAGE]
  if not groups:
    return Finding('proposals', title, paper, NOT_TESTABLE,
                   'Needs two or more successful Faster R-CNN / R-FCN '
                   'configurations differing only in the number of '
                   f'proposals; {_two_stage_status(rows)}.')
  lines, verdicts = [], []
  for group in groups:
    low, high = group[0], group[-1]
    saving = 1.0 - low['time_total_ms'] / high['time_total_ms']
    loss = ((high['map'] - low['map']) / high['map']
            if high['map'] > 0 else float('nan'))
    ok = saving >= PROPOSALS_MIN_TIME_SAVING and (
        _finite(loss) and loss <= PROPOSALS_MAX_MAP_LOSS)
    verdicts.append(ok)
    lines.append(
        f'- {low["meta_architecture"]} / {low["feature_extractor"]}: '
        f'{high["num_proposals"]} -> {low["num_proposals"]} proposals: time '
        f'{_fmt(high["time_total_ms"], ".1f")} -> '
        f'{_fmt(low["time_total_ms"], ".1f")} ms ({_pct(-saving)}), mAP '
        f'{_fmt(high["map"])} -> {_fmt(low["map"])} ({_pct(-loss)})'
        f'{_noise_note(low, high)}.')
  verdict = SHOWN if all(verdicts) else PARTLY if any(verdicts) else NOT_SHOWN
  criterion = (f'(criterion: time saving >= {PROPOSALS_MIN_TIME_SAVING:.0%} '
               f'and relative mAP loss <= {PROPOSALS_MAX_MAP_LOSS:.0%})')
  return Finding('proposals', title, paper, verdict,
                 '\n'.join(lines) + f'\n\n{criterion}')


def _extractor_spread(rows, arch):
  """Largest mAP spread across extractors of `arch` at one input size."""
  by_size = {}
  for row in _ok(rows, 'map'):
    if row.get('meta_architecture') != arch:
      continue
    by_size.setdefault(row.get('input_height'), {})
    best = by_size[row.get('input_height')]
    extractor = row.get('feature_extractor')
    if extractor not in best or row['map'] > best[extractor]['map']:
      best[extractor] = row
  spreads = []
  for size, extractors in by_size.items():
    if len(extractors) >= 2:
      values = sorted(extractors.values(), key=lambda r: r['map'])
      spreads.append((values[-1]['map'] - values[0]['map'], size, values))
  return max(spreads, key=lambda s: s[0]) if spreads else None


def finding_extractor_sensitivity(rows):
  paper = ('Sec. 4.1.3 / Fig. 3: Faster R-CNN and R-FCN accuracy depends '
           'strongly on the feature extractor\'s quality; SSD much less so.')
  title = 'SSD is less sensitive to the feature extractor than Faster R-CNN'
  spreads = {arch: _extractor_spread(rows, arch)
             for arch in sorted({r.get('meta_architecture') for r in rows
                                 if r.get('meta_architecture')})}
  lines = []
  for arch, spread in spreads.items():
    if spread is None:
      continue
    value, size, values = spread
    members = ', '.join(f'{r["feature_extractor"]} {_fmt(r["map"])}'
                        for r in values)
    lines.append(f'- {arch} at {size} px: mAP spread across extractors '
                 f'{_fmt(value)} ({members}){_noise_note(*values)}.')
  evidence = '\n'.join(lines)
  ssd = spreads.get('ssd')
  two_stage = [spreads.get(a) for a in plots.TWO_STAGE if spreads.get(a)]
  if ssd is None or not two_stage:
    missing = []
    if ssd is None:
      missing.append('two or more successful SSD extractors at one input '
                     'size')
    if not two_stage:
      missing.append('two or more successful Faster R-CNN / R-FCN extractors '
                     f'({_two_stage_status(rows)})')
    text = 'Needs ' + ' and '.join(missing) + '.'
    if evidence:
      text += ('\nSpread of mAP across extractors (extractor quality proxy: '
               'the spread itself; no ImageNet accuracy is measured):\n' +
               evidence)
    return Finding('extractor_sensitivity', title, paper, NOT_TESTABLE, text)
  worst_two_stage = max(s[0] for s in two_stage)
  verdict = SHOWN if ssd[0] < worst_two_stage else NOT_SHOWN
  return Finding('extractor_sensitivity', title, paper, verdict,
                 evidence + '\n\n(SSD spread vs the largest two-stage '
                 'spread.)')


def finding_memory_tracks_time(rows):
  paper = ('Sec. 4.1.8 / Fig. 9: memory use correlates highly with running '
           'time; larger, more powerful extractors need much more memory.')
  title = 'Memory tracks time'
  points = _ok(rows, 'memory_mb', 'time_total_ms')
  if len(points) < 3:
    return Finding('memory_tracks_time', title, paper, NOT_TESTABLE,
                   f'Needs three or more measured configurations; the run has '
                   f'{len(points)}.')
  times = [r['time_total_ms'] for r in points]
  mems = [r['memory_mb'] for r in points]
  rho = spearman(times, mems)
  r = pearson(times, mems)
  if rho is None:
    return Finding('memory_tracks_time', title, paper, NOT_TESTABLE,
                   'Time or memory is constant across configurations.')
  verdict = (SHOWN if rho >= STRONG_CORRELATION else
             PARTLY if rho >= WEAK_CORRELATION else NOT_SHOWN)
  kinds = ', '.join(sorted({str(p.get('memory_kind')) for p in points}))
  evidence = (f'Over {len(points)} configurations: Spearman rho = '
              f'{_fmt(rho, ".2f")}, Pearson r = {_fmt(r, ".2f")} between '
              f'inference time and inference memory ({kinds}; on CPU: peak '
              'resident size during inference minus the resident size '
              'before the model was built). Memory ranges '
              f'{_fmt(min(mems), ".0f")}-{_fmt(max(mems), ".0f")} MB, time '
              f'{_fmt(min(times), ".1f")}-{_fmt(max(times), ".1f")} ms.\n\n'
              f'(criterion: rho >= {STRONG_CORRELATION} shown, >= '
              f'{WEAK_CORRELATION} partly)')
  return Finding('memory_tracks_time', title, paper, verdict, evidence)


def frontier_rows(rows):
  """(frontier rows in time order, {role: row}) on mAP vs total time."""
  points = _ok(rows, 'map', 'time_total_ms')
  times = [r['time_total_ms'] for r in points]
  maps = [r['map'] for r in points]
  frontier = [points[i] for i in pareto.pareto_frontier(times, maps)]
  critical = pareto.critical_points(times, maps)
  roles = {role: points[i] for role, i in critical.as_dict().items()
           if i is not None}
  return frontier, roles


def finding_critical_points(rows):
  paper = ('Sec. 4.1.2 / Fig. 2: the fastest end of the frontier is SSD with '
           'light extractors (MobileNet, Inception V2) at low resolution; '
           'the sweet spot is R-FCN / Faster R-CNN with ResNet-101 and few '
           'proposals; the most accurate is Faster R-CNN with '
           'Inception-ResNet at high resolution and 300 proposals.')
  title = 'Where the frontier\'s critical points lie'
  frontier, roles = frontier_rows(rows)
  if len(_ok(rows, 'map', 'time_total_ms')) < 2:
    return Finding('critical_points', title, paper, NOT_TESTABLE,
                   'Needs two or more configurations with mAP and time.')
  lines = ['Frontier (time order): ' + ', '.join(
      f'{r["name"]} ({_fmt(r["time_total_ms"], ".1f")} ms, mAP '
      f'{_fmt(r["map"])})' for r in frontier) + '.']
  for role in ('fastest', 'sweet_spot', 'most_accurate'):
    row = roles.get(role)
    lines.append(f'- {role.replace("_", " ")}: ' + (
        f'{row["name"]} ({row["meta_architecture"]}, '
        f'{row["feature_extractor"]}, {row.get("input_height")} px)'
        if row else 'none (frontier too short or straight)'))
  checks = []
  fastest = roles.get('fastest')
  ssd_sizes = [r.get('input_height') for r in _ok(rows, 'map',
                                                  'time_total_ms')
               if r.get('meta_architecture') == 'ssd'
               and r.get('input_height')]
  if fastest is not None and ssd_sizes:
    ok = (fastest.get('meta_architecture') == 'ssd' and
          fastest.get('input_height') == min(ssd_sizes))
    checks.append(ok)
    lines.append(f'- Fastest end is an SSD at its lowest resolution: '
                 f'{"yes" if ok else "no"}.')
  two_stage = [r for r in _ok(rows, 'map', 'time_total_ms')
               if r.get('meta_architecture') in plots.TWO_STAGE]
  accurate = roles.get('most_accurate')
  if two_stage and accurate is not None:
    ok = accurate.get('meta_architecture') in plots.TWO_STAGE
    checks.append(ok)
    lines.append(f'- Most accurate end is a two-stage detector: '
                 f'{"yes" if ok else "no"}.')
  else:
    lines.append('- Most accurate end / sweet spot vs Faster R-CNN / R-FCN: '
                 f'not testable ({_two_stage_status(rows)}).')
  if not checks:
    verdict = NOT_TESTABLE
  elif all(checks) and two_stage:
    verdict = SHOWN
  elif any(checks):
    verdict = PARTLY
  else:
    verdict = NOT_SHOWN
  return Finding('critical_points', title, paper, verdict, '\n'.join(lines))


def finding_resolution(rows):
  paper = ('Sec. 3.3 / 4.1.5: halving the input resolution lowers mAP '
           '(15.9% relative on average) and time (27.4%); high resolution '
           'matters most for small objects (Sec. 4.1.4).')
  title = 'Lower input resolution: faster and less accurate'
  groups = groups_varying(_ok(rows, 'map', 'time_total_ms'), 'input_height')
  if not groups:
    return Finding('resolution', title, paper, NOT_TESTABLE,
                   'Needs configurations differing only in input '
                   'resolution.')
  lines, faster, worse = [], [], []
  for group in groups:
    low, high = group[0], group[-1]
    dt = low['time_total_ms'] / high['time_total_ms'] - 1.0
    dm = (low['map'] / high['map'] - 1.0) if high['map'] > 0 else math.nan
    small = ''
    if _finite(low.get('map_small')) and _finite(high.get('map_small')):
      small = (f', mAP small {_fmt(high["map_small"])} -> '
               f'{_fmt(low["map_small"])}')
    faster.append(dt < 0)
    worse.append(_finite(dm) and dm < 0)
    lines.append(f'- {low["meta_architecture"]} / {low["feature_extractor"]}'
                 f': {high["input_height"]} -> {low["input_height"]} px: time '
                 f'{_pct(dt)}, mAP {_fmt(high["map"])} -> {_fmt(low["map"])} '
                 f'({_pct(dm)}){small}{_noise_note(low, high)}.')
  both = [f and w for f, w in zip(faster, worse)]
  verdict = SHOWN if all(both) else PARTLY if any(faster + worse) else (
      NOT_SHOWN)
  return Finding('resolution', title, paper, verdict, '\n'.join(lines))


def finding_output_stride(rows):
  paper = ('Sec. 3.1.3: output stride 8 instead of 16 (ResNet-101, '
           'Inception-ResNet) raises mAP by ~5% but costs ~63% more time.')
  title = 'Output stride 8 vs 16'
  groups = groups_varying(_ok(rows, 'map', 'time_total_ms'), 'output_stride')
  if not groups:
    return Finding('output_stride', title, paper, NOT_TESTABLE,
                   'Needs successful configurations differing only in output '
                   f'stride; {_two_stage_status(rows)}.')
  lines, checks = [], []
  for group in groups:
    small, large = group[0], group[-1]
    dt = small['time_total_ms'] / large['time_total_ms'] - 1.0
    dm = small['map'] - large['map']
    checks.append(dt > 0 and dm > 0)
    lines.append(f'- {small["meta_architecture"]} / '
                 f'{small["feature_extractor"]}: stride '
                 f'{large["output_stride"]} -> {small["output_stride"]}: time '
                 f'{_pct(dt)}, mAP {_fmt(large["map"])} -> '
                 f'{_fmt(small["map"])}{_noise_note(small, large)}.')
  verdict = SHOWN if all(checks) else PARTLY if any(checks) else NOT_SHOWN
  return Finding('output_stride', title, paper, verdict, '\n'.join(lines))


FINDINGS = (finding_proposals, finding_extractor_sensitivity,
            finding_memory_tracks_time, finding_critical_points,
            finding_resolution, finding_output_stride)


def analyze(rows: Sequence[Dict]) -> List[Finding]:
  """Every finding of `FINDINGS`, in order, checked on the rows."""
  return [f(rows) for f in FINDINGS]


# ----------------------------------------------------------------- table
_TABLE = (
    ('name', 'configuration', None),
    ('meta_architecture', 'meta-arch', None),
    ('feature_extractor', 'extractor', None),
    ('input_height', 'input px', 'd'),
    ('num_proposals', 'proposals', 'd'),
    ('map', 'mAP', '.3f'),
    ('map_50', 'mAP@.5', '.3f'),
    ('map_small', 'mAP S', '.3f'),
    ('map_medium', 'mAP M', '.3f'),
    ('map_large', 'mAP L', '.3f'),
    ('time_total_ms', 'time ms', '.1f'),
    ('time_network_ms', 'net ms', '.1f'),
    ('time_postprocess_ms', 'post ms', '.1f'),
    ('postprocess_share', 'post share', '.0%'),
    ('memory_mb', 'mem MB', '.0f'),
    ('gflops', 'GFLOPs', '.3f'),
    ('num_parameters', 'params M', 'M'),
    ('train_wall_time_s', 'train s', '.0f'),
)


def _cell(row, key, spec):
  value = row.get(key)
  if value is None or value == '':
    return '-'
  if spec == 'M':
    return f'{value / 1e6:.2f}' if _finite(value) else '-'
  if spec == 'd':
    return f'{int(value)}' if _finite(value) else str(value)
  if spec is None:
    return str(value).replace('|', '\\|')
  return format(value, spec) if _finite(value) else '-'


def results_table(rows: Sequence[Dict],
                  fraction_columns: Sequence[str] = ()) -> str:
  """Markdown table of the rows; failed rows carry their error."""
  columns = list(_TABLE) + [(c, c.replace('_final_map', '')
                             .replace('_', ' '), '.0f' if c.startswith(
                                 'time') else 'd')
                            for c in fraction_columns]
  lines = ['| ' + ' | '.join(h for _, h, _ in columns) + ' | status |',
           '|' + '---|' * (len(columns) + 1)]
  for row in rows:
    status = row.get('status', '')
    if status != 'ok':
      status = f'{status}: {row.get("error", "")}'.replace('|', '\\|')
    lines.append('| ' + ' | '.join(_cell(row, k, s) for k, _, s in columns)
                 + f' | {status} |')
  return '\n'.join(lines)


# ----------------------------------------------------------------- report
_PLOT_TITLES = {
    'map_vs_time': 'mAP vs inference time (Pareto frontier, critical points)',
    'memory_vs_time': 'Memory vs time',
    'flops_vs_time': 'FLOPs vs time',
    'proposals': 'mAP and time vs number of proposals',
    'map_by_size': 'mAP by object size',
    'map_vs_training_time': 'mAP vs training time',
}

_PLOT_MISSING = {
    'proposals': 'skipped: no successful Faster R-CNN / R-FCN configuration '
                 'with a proposal count',
}


def caveats(rows: Sequence[Dict]) -> List[str]:
  """Warnings about the reliability of the run's figures (markdown lines).

  * Accuracy: configurations whose mAP is below `MIN_MEANINGFUL_MAP`.
  * Timing: configurations timed while the host's 1-minute load average
    exceeded its CPU count (other processes competed for the CPU).
  """
  notes = []
  measured = _ok(rows, 'map')
  weak = [r for r in measured if r['map'] < MIN_MEANINGFUL_MAP]
  if weak and len(weak) == len(measured):
    notes.append(f'- Every mAP is below {MIN_MEANINGFUL_MAP} (too little '
                 'training, e.g. --quick): the verdicts that compare '
                 'accuracies rest on noise.')
  elif weak:
    notes.append(f'- mAP below {MIN_MEANINGFUL_MAP} (barely trained; '
                 'accuracy comparisons involving them rest on noise): ' +
                 ', '.join(r['name'] for r in weak) + '.')
  loaded = [r for r in _ok(rows, 'cpu_load_1m')
            if _finite(r.get('num_cpus')) and r['cpu_load_1m'] > r['num_cpus']]
  if loaded:
    worst = max(r['cpu_load_1m'] for r in loaded)
    notes.append(
        f'- {len(loaded)} configuration(s) were timed while the 1-minute '
        f'load average (up to {worst:.1f}) exceeded the host\'s '
        f'{loaded[0]["num_cpus"]} CPUs: other processes competed, so their '
        'times (and training times) are inflated and noisy: ' +
        ', '.join(r['name'] for r in loaded) + '.')
  return notes


def write_report(path: str, rows: Sequence[Dict], *,
                 plot_paths: Dict[str, Optional[str]],
                 findings: Sequence[Finding],
                 fraction_columns: Sequence[str] = (),
                 settings: Optional[Dict] = None,
                 wall_time_s: Optional[float] = None) -> str:
  """Writes report.md; plots are linked relative to the report.

  Returns:
    the path written.
  """
  base = os.path.dirname(os.path.abspath(path))
  settings = settings or {}
  ok = [r for r in rows if r.get('status') == 'ok']
  devices = sorted({str(r.get('device')) for r in rows if r.get('device')})
  versions = sorted({str(r.get('tf_version')) for r in rows
                     if r.get('tf_version')})
  lines = ['# Speed/accuracy trade-off study', '',
           'After Huang et al. 2017, "Speed/accuracy trade-offs for modern '
           'convolutional object detectors" (Sec. 3.5, 4), with training '
           'time as a third axis.', '',
           f'- configurations: {len(rows)} ({len(ok)} ok, '
           f'{len(rows) - len(ok)} failed)',
           f'- device: {", ".join(devices) or "-"}; TensorFlow '
           f'{", ".join(versions) or "-"}']
  if wall_time_s is not None:
    lines.append(f'- study wall time: {wall_time_s:.0f} s')
  for key in ('train_steps', 'train_batch_size', 'num_checkpoints',
              'eval_examples', 'num_images', 'num_warmup', 'map_fractions'):
    if key in settings:
      lines.append(f'- {key}: {settings[key]}')
  notes = caveats(rows)
  if notes:
    lines += ['', '**Caveats**', ''] + notes
  lines += [
      '',
      'Method: time = median over the timed images (batch 1, after warm-up) '
      'of resize + preprocess + network + post-processing, outputs copied to '
      'host; "net" = the network (`predict`) alone (it materializes every '
      'prediction tensor, also those the total graph prunes, so it can '
      'slightly exceed the total), "post" = `postprocess` alone; post share '
      '= post / time; the three are timed interleaved, image by image. Memory on CPU = peak resident size '
      'during the timed inference minus the resident size before the model '
      'was built (each configuration in its own process); on GPU, '
      'TensorFlow\'s allocator peak. FLOPs: tfprof float ops of the '
      'inference graph at batch 1. mAP: COCO metrics on the eval input '
      '(S/M/L: COCO area ranges; "-" where no groundtruth has that size). '
      'Train s: training wall time including model building.', '',
      '## Results', '', results_table(rows, fraction_columns), '',
      '## Plots', '']
  for name, title in _PLOT_TITLES.items():
    plot = plot_paths.get(name)
    if plot:
      lines += [f'### {title}', '',
                f'![{title}]({os.path.relpath(plot, base)})', '']
    else:
      reason = _PLOT_MISSING.get(name, 'skipped: no configuration has the '
                                 'figures this plot needs')
      errors = plot_paths.get('errors') or {}
      if name in errors:
        reason = f'failed: {errors[name]}'
      lines += [f'### {title}', '', f'({reason})', '']
  lines += ['## Findings of the paper in our run', '']
  for finding in findings:
    lines += [f'### {finding.title}', '', f'Paper: {finding.paper}', '',
              f'Our run: **{finding.verdict}**.', '', finding.evidence, '']
  failed = [r for r in rows if r.get('status') != 'ok']
  if failed:
    lines += ['## Failed configurations', '']
    lines += [f'- {r["name"]}: {r.get("error", "")}' for r in failed]
    lines.append('')
  os.makedirs(base, exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))
  return path
