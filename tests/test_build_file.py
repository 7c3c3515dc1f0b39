"""Checks the Bazel BUILD file against the source tree."""

import glob
import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_text():
  with open(os.path.join(ROOT, 'BUILD'), encoding='utf-8') as f:
    return f.read()


def _targets(text):
  """Yields (rule, name, body) for each top-level rule call in BUILD."""
  for match in re.finditer(r'^(\w+)\(\n(.*?)^\)\n', text, flags=re.M | re.S):
    rule, body = match.group(1), match.group(2)
    name = re.search(r'name = "([^"]+)"', body)
    yield rule, name.group(1) if name else None, body


def _named_files(body):
  files = []
  for key in ('srcs', 'main'):
    m = re.search(key + r' = (\[.*?\]|"[^"]*")', body, flags=re.S)
    if m:
      files += re.findall(r'"([^"]+)"', m.group(1))
  return files


def test_every_named_file_exists():
  missing = []
  for rule, name, body in _targets(_build_text()):
    for path in _named_files(body):
      if not os.path.exists(os.path.join(ROOT, path)):
        missing.append(f'{rule} {name}: {path}')
  assert not missing, 'BUILD names missing files:\n' + '\n'.join(missing)


def test_every_test_file_has_a_py_test_target():
  tested = set()
  for rule, _, body in _targets(_build_text()):
    if rule == 'py_test':
      tested.update(_named_files(body))
  test_files = {
      os.path.relpath(p, ROOT).replace(os.sep, '/')
      for p in glob.glob(os.path.join(ROOT, 'tests', '**', 'test_*.py'),
                         recursive=True)}
  assert test_files, 'no test files found'
  assert not test_files - tested, (
      f'test files without a py_test target: {sorted(test_files - tested)}; '
      'run python scripts/update_build_file.py')


def test_every_proto_and_module_has_a_target():
  named = set()
  rules = {}
  for rule, name, body in _targets(_build_text()):
    rules[name] = rule
    named.update(_named_files(body))
  sources = glob.glob(os.path.join(ROOT, 'protos', '*.proto')) + glob.glob(
      os.path.join(ROOT, 'od_meta', '**', '*.py'), recursive=True)
  sources = {os.path.relpath(p, ROOT).replace(os.sep, '/') for p in sources}
  assert not sources - named, f'files in no target: {sorted(sources - named)}'
  assert any(r == 'proto_library' for r in rules.values())


def test_build_file_is_current():
  spec = importlib.util.spec_from_file_location(
      'update_build_file', os.path.join(ROOT, 'scripts', 'update_build_file.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if module.render() != _build_text():
    pytest.fail('BUILD is stale; run: python scripts/update_build_file.py')
