"""Tests for od_meta.benchmark.report and plots on hand-made study rows."""

import os

import pytest

from od_meta.benchmark import plots
from od_meta.benchmark import report


def _row(name, arch, extractor, size, time_ms, map_, memory_mb=None,
         proposals=None, stride=None, **extra):
  row = {'name': name, 'status': 'ok', 'error': '',
         'meta_architecture': arch, 'feature_extractor': extractor,
         'depth_multiplier': None, 'input_height': size, 'input_width': size,
         'num_proposals': proposals, 'output_stride': stride,
         'time_total_ms': time_ms, 'map': map_, 'memory_mb': memory_mb,
         'memory_kind': 'cpu_peak_rss', 'gflops': time_ms / 100.0,
         'curve': []}
  row.update(extra)
  return row


def _full_rows():
  return [
      _row('ssd-mnv2-300', 'ssd', 'mobilenet_v2', 300, 10.0, 0.19, 100,
           map_small=0.02, map_medium=0.2, map_large=0.4,
           curve=[{'step': 1, 'wall_time_s': 5.0, 'map': 0.1},
                  {'step': 2, 'wall_time_s': 9.0, 'map': 0.19}]),
      _row('ssd-mnv2-600', 'ssd', 'mobilenet_v2', 600, 20.0, 0.22, 150,
           map_small=0.05),
      _row('ssd-incv2-300', 'ssd', 'inception_v2', 300, 14.0, 0.21, 120),
      _row('frcnn-r101-p300', 'faster_rcnn', 'resnet101', 600, 100.0, 0.32,
           900, proposals=300, stride=16),
      _row('frcnn-r101-p50', 'faster_rcnn', 'resnet101', 600, 60.0, 0.31,
           700, proposals=50, stride=16),
      _row('frcnn-r101-p300-s8', 'faster_rcnn', 'resnet101', 600, 163.0,
           0.34, 1200, proposals=300, stride=8),
      _row('frcnn-mnv1-p300', 'faster_rcnn', 'mobilenet_v1', 600, 40.0,
           0.19, 300, proposals=300, stride=16),
      {'name': 'broken', 'status': 'failed', 'error': 'train: ValueError: x',
       'meta_architecture': 'rfcn', 'feature_extractor': 'resnet101',
       'time_total_ms': None, 'map': None, 'curve': []},
  ]


def test_spearman_and_pearson_golden():
  # ys ranks [1, 2, 4, 3]: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1))
  #                            = 1 - 6 * 2 / (4 * 15) = 0.8
  assert report.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
  assert report.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
  assert report.pearson([1, 2], [2, 4]) is None  # < 3 points
  assert report.pearson([1, 1, 1], [2, 4, 6]) is None  # constant
  # Ties get their average rank: [1, 2.5, 2.5, 4].
  assert report._ranks([1, 5, 5, 9]) == [1.0, 2.5, 2.5, 4.0]
  with pytest.raises(ValueError, match='length'):
    report.spearman([1], [1, 2])


def test_findings_on_a_full_run():
  findings = {f.key: f for f in report.analyze(_full_rows())}
  # 300 -> 50 proposals: time 100 -> 60 ms (-40%), mAP 0.32 -> 0.31
  # (-3.1%): saving >= 20% and loss <= 15% -> shown.
  assert findings['proposals'].verdict == report.SHOWN
  assert '-40.0%' in findings['proposals'].evidence
  assert '-3.1%' in findings['proposals'].evidence
  # Spread at 300 px for SSD: 0.21 - 0.19 = 0.02; Faster R-CNN at 600 px:
  # 0.32 - 0.19 = 0.13 (best row per extractor) -> SSD less sensitive.
  assert findings['extractor_sensitivity'].verdict == report.SHOWN
  # Memory and time have the same order over the 7 measured rows.
  assert findings['memory_tracks_time'].verdict == report.SHOWN
  assert 'Spearman rho = 1.00' in findings['memory_tracks_time'].evidence
  # Fastest: ssd-mnv2-300 (SSD at its lowest resolution); most accurate:
  # frcnn-r101-p300-s8 (two-stage) -> shown.
  critical = findings['critical_points']
  assert critical.verdict == report.SHOWN
  assert 'fastest: ssd-mnv2-300' in critical.evidence
  assert 'most accurate: frcnn-r101-p300-s8' in critical.evidence
  # 600 -> 300 px SSD: faster and less accurate, and fewer small objects.
  assert findings['resolution'].verdict == report.SHOWN
  assert 'mAP small 0.050 -> 0.020' in findings['resolution'].evidence
  # Stride 16 -> 8: +63% time, +0.02 mAP.
  assert findings['output_stride'].verdict == report.SHOWN
  assert '+63.0%' in findings['output_stride'].evidence


def test_findings_not_testable_without_two_stage_rows():
  rows = [r for r in _full_rows()
          if r['meta_architecture'] not in ('faster_rcnn',)]
  findings = {f.key: f for f in report.analyze(rows)}
  for key in ('proposals', 'extractor_sensitivity', 'output_stride'):
    assert findings[key].verdict == report.NOT_TESTABLE, key
  # The failed R-FCN row is named as the reason.
  assert 'broken: train: ValueError: x' in findings['proposals'].evidence
  # SSD's spread is still reported.
  assert 'ssd at 300 px' in findings['extractor_sensitivity'].evidence
  # Fastest end checked, most-accurate end not testable -> partly shown.
  assert findings['critical_points'].verdict == report.PARTLY
  assert findings['memory_tracks_time'].verdict == report.SHOWN
  empty = {f.key: f.verdict for f in report.analyze([])}
  assert set(empty.values()) == {report.NOT_TESTABLE}


def test_memory_not_tracking_time_is_not_shown():
  rows = [_row(f'r{i}', 'ssd', 'm', 300, t, 0.1, m)
          for i, (t, m) in enumerate([(1, 400), (2, 300), (3, 200),
                                      (4, 100)])]
  finding = report.finding_memory_tracks_time(rows)
  assert finding.verdict == report.NOT_SHOWN
  assert 'rho = -1.00' in finding.evidence


def test_caveats_for_weak_accuracy_and_cpu_load():
  rows = _full_rows()
  assert report.caveats(rows) == []
  rows[0]['map'] = 0.01
  rows[1].update(cpu_load_1m=5.5, num_cpus=2)
  rows[2].update(cpu_load_1m=1.5, num_cpus=2)
  notes = report.caveats(rows)
  assert len(notes) == 2
  assert notes[0].endswith(': ssd-mnv2-300.')
  assert 'load average (up to 5.5)' in notes[1]
  assert notes[1].endswith(': ssd-mnv2-600.')
  weak = [_row('a', 'ssd', 'm', 300, 1.0, 0.0), _row('b', 'ssd', 'm', 300,
                                                     2.0, 0.01)]
  assert 'Every mAP is below 0.05' in report.caveats(weak)[0]


def test_results_table_marks_failures_and_units():
  rows = _full_rows()
  rows[0]['num_parameters'] = 2_500_000
  rows[0]['postprocess_share'] = 0.25
  table = report.results_table(rows, ['steps_to_50pct_final_map',
                                      'time_to_50pct_final_map_s'])
  lines = table.splitlines()
  assert lines[0].startswith('| configuration | meta-arch |')
  assert 'steps to 50pct' in lines[0]
  assert len(lines) == 2 + len(rows)
  assert '| 2.50 |' in lines[2] and '| 25% |' in lines[2]
  assert lines[-1].endswith('| failed: train: ValueError: x |')


@pytest.fixture(scope='module')
def plot_dir(tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp('plots'))
  return output_dir, plots.make_all_plots(_full_rows(), output_dir)


def test_plots_with_two_stage_rows(plot_dir, tmp_path):
  _, paths = plot_dir
  assert 'errors' not in paths
  for name, path in paths.items():
    assert path is not None, name
    assert os.path.getsize(path) > 1000, name
  # Without any successful two-stage row the proposals plot is skipped.
  rows = [r for r in _full_rows() if r['meta_architecture'] == 'ssd']
  assert plots.plot_proposals(rows, str(tmp_path / 'p.png')) is None
  assert plots.plot_map_vs_time([], str(tmp_path / 'x.png')) is None
  groups = plots.proposal_groups(_full_rows())
  assert [[r['num_proposals'] for r in g] for g in groups.values()] == [
      [50, 300], [300], [300]]


def test_report_file(plot_dir):
  output_dir, paths = plot_dir
  rows = _full_rows()
  path = report.write_report(
      os.path.join(output_dir, 'report.md'), rows, plot_paths=paths,
      findings=report.analyze(rows), settings={'train_steps': 5},
      wall_time_s=12.0)
  text = open(path, encoding='utf-8').read()
  assert '](map_time_vs_proposals.png)' in text
  assert '- train_steps: 5' in text
  assert text.count('Our run: **') == len(report.FINDINGS)
  assert '## Failed configurations' in text and '- broken:' in text
  assert '| broken |' in text
