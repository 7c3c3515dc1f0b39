"""The committed od_meta/protos/*_pb2.py must match protos/*.proto.

Regenerates every module into a temporary directory with grpcio-tools'
protoc (od_meta.protos.regenerate.generate) and compares bytes with the
committed files.
"""

import importlib
import os

import pytest

from od_meta.protos import regenerate

COMMITTED_DIR = os.path.join(regenerate.REPO_ROOT, 'od_meta', 'protos')


def _committed_pb2_files():
  return sorted(f for f in os.listdir(COMMITTED_DIR) if f.endswith('_pb2.py'))


def test_generated_code_is_current(tmp_path):
  import grpc_tools  # noqa: F401  (a test dependency: failing is right)
  generated = regenerate.generate(str(tmp_path))
  expected_names = sorted(os.path.basename(p) for p in generated)
  committed_names = _committed_pb2_files()
  hint = f'Regenerate with `{regenerate.COMMAND}` from the repository root.'
  missing = sorted(set(expected_names) - set(committed_names))
  stale = sorted(set(committed_names) - set(expected_names))
  assert not missing, f'od_meta/protos lacks {missing}. {hint}'
  assert not stale, (f'od_meta/protos has {stale} with no protos/*.proto '
                     f'source; delete them. {hint}')
  differing = []
  for path in generated:
    name = os.path.basename(path)
    with open(path, 'rb') as f:
      fresh = f.read()
    with open(os.path.join(COMMITTED_DIR, name), 'rb') as f:
      committed = f.read()
    if fresh != committed:
      differing.append(f'od_meta/protos/{name}')
  assert not differing, (f'{differing} differ from protoc output of '
                         f'protos/*.proto. {hint}')


def test_every_module_imports_with_installed_runtime():
  # The generated code validates the protobuf runtime version on import.
  for name in _committed_pb2_files():
    module = importlib.import_module(f'od_meta.protos.{name[:-3]}')
    assert module.DESCRIPTOR.name == f'od_meta/protos/{name[:-7]}.proto'
    assert module.DESCRIPTOR.package == 'od_meta.protos'


def test_generate_raises_on_empty_proto_dir(tmp_path):
  import grpc_tools  # noqa: F401  (a test dependency: failing is right)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match='no .proto'):
    regenerate.generate(str(tmp_path / 'out'), proto_dir=str(empty))
