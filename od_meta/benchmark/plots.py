"""Plots of the trade-off study (matplotlib, PNG).

After Huang et al. 2017, Fig. 2 (accuracy vs time, frontier and critical
points), Fig. 5 (accuracy by object size), Fig. 6 (proposals), Fig. 7-8
(FLOPs vs time), Fig. 9 (memory vs time), plus accuracy vs training time.
Each function takes the study rows (dicts with the `study.BASE_COLUMNS`
keys; failed or incomplete rows are skipped) and a PNG path, and returns
the path, or None when no row has what the plot needs (the report then says
so). Colour = meta-architecture, marker = feature extractor. No protos, no
TensorFlow.
"""

import math
import os
from typing import Dict, List, Optional, Sequence

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from od_meta.benchmark import pareto  # pylint: disable=g-import-not-at-top,wrong-import-position

TWO_STAGE = ('faster_rcnn', 'rfcn')
_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*', 'h', '<', '>', 'p')

PLOT_FILES = {
    'map_vs_time': 'map_vs_time.png',
    'memory_vs_time': 'memory_vs_time.png',
    'flops_vs_time': 'flops_vs_time.png',
    'proposals': 'map_time_vs_proposals.png',
    'map_by_size': 'map_by_object_size.png',
    'map_vs_training_time': 'map_vs_training_time.png',
}


def _finite(value):
  return (value is not None and isinstance(value, (int, float)) and
          not isinstance(value, bool) and math.isfinite(value))


def _with(rows, *keys):
  return [r for r in rows if all(_finite(r.get(k)) for k in keys)]


def _styles(rows):
  """(meta-architecture -> colour, feature extractor -> marker)."""
  cmap = plt.get_cmap('tab10')
  archs = sorted({str(r.get('meta_architecture')) for r in rows})
  extractors = sorted({str(r.get('feature_extractor')) for r in rows})
  colours = {a: cmap(i % 10) for i, a in enumerate(archs)}
  markers = {e: _MARKERS[i % len(_MARKERS)] for i, e in enumerate(extractors)}
  return colours, markers


def _scatter(ax, rows, x_key, y_key):
  """Scatter with colour/marker legends; returns (colours, markers)."""
  colours, markers = _styles(rows)
  for row in rows:
    ax.scatter(row[x_key], row[y_key],
               color=colours[str(row.get('meta_architecture'))],
               marker=markers[str(row.get('feature_extractor'))], s=60,
               edgecolors='black', linewidths=0.5, zorder=3)
  arch_handles = [plt.Line2D([], [], color=c, marker='o', linestyle='',
                             label=a) for a, c in colours.items()]
  extractor_handles = [plt.Line2D([], [], color='gray', marker=m,
                                  linestyle='', label=e)
                       for e, m in markers.items()]
  # Legends outside the axes, so that they hide no point.
  first = ax.legend(handles=arch_handles, title='meta-architecture',
                    loc='upper left', bbox_to_anchor=(1.02, 1.0), fontsize=7,
                    title_fontsize=7)
  ax.add_artist(first)
  ax.legend(handles=extractor_handles, title='feature extractor',
            loc='lower left', bbox_to_anchor=(1.02, 0.0), fontsize=7,
            title_fontsize=7)
  return colours, markers


def _save(fig, path):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_map_vs_time(rows: Sequence[Dict], path: str) -> Optional[str]:
  """mAP vs total inference time, Pareto frontier and critical points.

  The frontier (`pareto.pareto_frontier`) is drawn as a dashed line through
  its points in order of time; the critical points (fastest, sweet spot,
  most accurate) are labelled with their configuration names.
  """
  points = _with(rows, 'time_total_ms', 'map')
  if not points:
    return None
  fig, ax = plt.subplots(figsize=(9.5, 5.5))
  _scatter(ax, points, 'time_total_ms', 'map')
  times = [r['time_total_ms'] for r in points]
  maps = [r['map'] for r in points]
  frontier = pareto.pareto_frontier(times, maps)
  ax.plot([times[i] for i in frontier], [maps[i] for i in frontier], '--',
          color='black', linewidth=1, zorder=2, label='optimality frontier')
  critical = pareto.critical_points(times, maps)
  for role, index in critical.as_dict().items():
    if index is None:
      continue
    ax.annotate(f'{points[index]["name"]}\n({role.replace("_", " ")})',
                (times[index], maps[index]), textcoords='offset points',
                xytext=(6, 6), fontsize=7,
                arrowprops={'arrowstyle': '-', 'linewidth': 0.5})
  ax.margins(x=0.15, y=0.1)  # Room for the labels of the extremes.
  ax.set_xlabel('inference time per image, batch 1 (ms, median)')
  ax.set_ylabel('COCO mAP[.5:.95]')
  ax.set_title('Accuracy vs time (dashed: Pareto frontier)')
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_memory_vs_time(rows: Sequence[Dict], path: str) -> Optional[str]:
  """Inference memory (MB) vs total inference time (ms)."""
  points = _with(rows, 'time_total_ms', 'memory_mb')
  if not points:
    return None
  fig, ax = plt.subplots(figsize=(8.5, 5))
  _scatter(ax, points, 'time_total_ms', 'memory_mb')
  for row in points:
    ax.annotate(row['name'], (row['time_total_ms'], row['memory_mb']),
                textcoords='offset points', xytext=(4, -8), fontsize=6)
  kinds = {r.get('memory_kind') for r in points}
  ax.set_xlabel('inference time per image (ms)')
  ax.set_ylabel('inference memory (MB; ' + ', '.join(
      sorted(str(k) for k in kinds)) + ')')
  ax.set_title('Memory vs time')
  ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_flops_vs_time(rows: Sequence[Dict], path: str) -> Optional[str]:
  """GFLOPs of the inference graph vs total inference time."""
  points = _with(rows, 'time_total_ms', 'gflops')
  if not points:
    return None
  fig, ax = plt.subplots(figsize=(8.5, 5))
  _scatter(ax, points, 'gflops', 'time_total_ms')
  for row in points:
    ax.annotate(row['name'], (row['gflops'], row['time_total_ms']),
                textcoords='offset points', xytext=(4, -8), fontsize=6)
  ax.set_xlabel('GFLOPs per image (tfprof, batch 1)')
  ax.set_ylabel('inference time per image (ms)')
  ax.set_title('FLOPs vs time')
  ax.grid(alpha=0.3)
  return _save(fig, path)


def proposal_groups(rows: Sequence[Dict]) -> Dict[tuple, List[Dict]]:
  """Two-stage rows with a proposal count, grouped by everything else.

  Returns:
    dict (meta-architecture, extractor, input height, output stride) ->
    rows sorted by num_proposals, for groups with at least one row having
    mAP and time.
  """
  groups = {}
  for row in _with(rows, 'num_proposals', 'map', 'time_total_ms'):
    if row.get('meta_architecture') not in TWO_STAGE:
      continue
    key = (row.get('meta_architecture'), row.get('feature_extractor'),
           row.get('input_height'), row.get('output_stride'))
    groups.setdefault(key, []).append(row)
  return {k: sorted(v, key=lambda r: r['num_proposals'])
          for k, v in groups.items()}


def plot_proposals(rows: Sequence[Dict], path: str) -> Optional[str]:
  """mAP and time vs number of proposals (Faster R-CNN / R-FCN only)."""
  groups = proposal_groups(rows)
  if not groups:
    return None
  fig, (ax_map, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
  for key, group in groups.items():
    label = '/'.join(str(k) for k in key if k is not None)
    xs = [r['num_proposals'] for r in group]
    ax_map.plot(xs, [r['map'] for r in group], 'o-', label=label)
    ax_time.plot(xs, [r['time_total_ms'] for r in group], 'o-', label=label)
  for ax, label in ((ax_map, 'COCO mAP'), (ax_time, 'time per image (ms)')):
    ax.set_xlabel('number of proposals')
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  ax_map.legend(fontsize=7)
  fig.suptitle('Effect of the number of proposals')
  return _save(fig, path)


def plot_map_by_size(rows: Sequence[Dict], path: str) -> Optional[str]:
  """Grouped bars: mAP on small / medium / large objects per configuration.

  Sizes without groundtruth (COCO gives -1, stored as None) are left out.
  """
  sizes = ('map_small', 'map_medium', 'map_large')
  points = [r for r in rows if any(_finite(r.get(s)) for s in sizes)]
  if not points:
    return None
  present = [s for s in sizes if any(_finite(r.get(s)) for r in points)]
  fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(points) + 2), 4.5))
  width = 0.8 / len(present)
  for j, size in enumerate(present):
    xs = [i + (j - (len(present) - 1) / 2) * width
          for i in range(len(points))]
    ys = [r.get(size) if _finite(r.get(size)) else 0.0 for r in points]
    ax.bar(xs, ys, width=width, label=size.replace('map_', ''))
  ax.set_xticks(range(len(points)))
  ax.set_xticklabels([r['name'] for r in points], rotation=35, ha='right',
                     fontsize=7)
  ax.set_ylabel('COCO mAP')
  ax.set_title('Accuracy by object size (COCO areas)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, axis='y')
  return _save(fig, path)


def plot_map_vs_training_time(rows: Sequence[Dict],
                              path: str) -> Optional[str]:
  """mAP of each evaluated checkpoint vs training wall time."""
  curves = []
  for row in rows:
    curve = [p for p in row.get('curve') or []
             if _finite(p.get('wall_time_s')) and _finite(p.get('map'))]
    if curve:
      curves.append((row, sorted(curve, key=lambda p: p['wall_time_s'])))
  if not curves:
    return None
  colours, markers = _styles([r for r, _ in curves])
  fig, ax = plt.subplots(figsize=(7, 5))
  for row, curve in curves:
    ax.plot([p['wall_time_s'] for p in curve], [p['map'] for p in curve],
            marker=markers[str(row.get('feature_extractor'))],
            color=colours[str(row.get('meta_architecture'))],
            label=row['name'])
  ax.set_xlabel('training wall time (s, model building included)')
  ax.set_ylabel('COCO mAP')
  ax.set_title('Accuracy vs training time')
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  return _save(fig, path)


_PLOTTERS = {
    'map_vs_time': plot_map_vs_time,
    'memory_vs_time': plot_memory_vs_time,
    'flops_vs_time': plot_flops_vs_time,
    'proposals': plot_proposals,
    'map_by_size': plot_map_by_size,
    'map_vs_training_time': plot_map_vs_training_time,
}


def make_all_plots(rows: Sequence[Dict],
                   output_dir: str) -> Dict[str, Optional[str]]:
  """Draws every plot into output_dir; returns name -> path (None: skipped).

  A plot that raises is reported as skipped (None) rather than stopping the
  study; the exception text goes to the 'errors' entry.
  """
  paths = {}
  errors = {}
  for name, plotter in _PLOTTERS.items():
    try:
      paths[name] = plotter(rows, os.path.join(output_dir, PLOT_FILES[name]))
    except Exception as e:  # pylint: disable=broad-except
      plt.close('all')
      paths[name] = None
      errors[name] = f'{type(e).__name__}: {e}'
  if errors:
    paths['errors'] = errors
  return paths
