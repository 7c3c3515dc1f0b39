"""benchmarks/atss_assignment.py: the verdict rule and the run configs."""

import importlib.util
import os

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


_MODULE = []


def _module():
  """Loads the script once (its absl flags can be defined only once)."""
  if _MODULE:
    return _MODULE[0]
  spec = importlib.util.spec_from_file_location(
      'atss_assignment', os.path.join(_REPO, 'benchmarks',
                                      'atss_assignment.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  _MODULE.append(module)
  return module


def test_verdict_rules():
  verdict = _module().verdict
  # Gap above the noise with each detector's own rule, within it with ATSS.
  assert verdict(0.05, 0.01, 0.015).startswith('the gap closes')
  assert verdict(-0.05, -0.005, 0.015).startswith('the gap closes')
  assert verdict(0.01, 0.005, 0.015).startswith('no gap to close')
  assert verdict(0.08, 0.04, 0.015).startswith('the gap narrows')
  assert verdict(0.02, 0.05, 0.015).startswith('the gap does not close')
  assert "FCOS's rule in both" in verdict(0.08, 0.005, 0.015,
                                          shared="FCOS's rule")
  assert verdict(0.01, 0.05, 0.015).startswith('the gap does not close')


def test_configs_for_cuts_the_schedule():
  module = _module()
  configs = module.configs_for(
      os.path.join(_REPO, 'configs', 'fcos_mobilenet_v2_fpn_digits.config'),
      300)
  train = configs['train_config']
  assert train.num_steps == 300 and train.checkpoint_every_n == 100
  cosine = (train.optimizer.momentum_optimizer.learning_rate
            .cosine_decay_learning_rate)
  assert cosine.total_steps == 300 and cosine.warmup_steps == 30
  assert configs['eval_config'].num_visualizations == 0
