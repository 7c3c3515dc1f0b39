"""Style rules of protos/*.proto: proto2, one package, documented fields.

Every message, field, enum, enum value and oneof must carry a comment
(leading or trailing); checked on protoc's source info, so a comment that
protoc does not attach to the element does not count.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

from od_meta.protos import regenerate

PROTO_FILES = sorted(glob.glob(os.path.join(regenerate.PROTO_DIR, '*.proto')))


def test_there_are_proto_files():
  assert len(PROTO_FILES) >= 20


@pytest.mark.parametrize('path', PROTO_FILES, ids=os.path.basename)
def test_header_and_imports(path):
  with open(path, encoding='utf-8') as f:
    text = f.read()
  assert re.search(r'^syntax = "proto2";$', text, flags=re.M), path
  assert re.search(r'^package od_meta\.protos;$', text, flags=re.M), path
  for imported in re.findall(r'^import\s+"([^"]+)";', text, flags=re.M):
    assert re.fullmatch(r'od_meta/protos/\w+\.proto', imported), (
        f'{path}: import "{imported}" must be "od_meta/protos/<name>.proto"')
    stem = imported.split('/')[-1]
    assert os.path.exists(os.path.join(regenerate.PROTO_DIR, stem)), imported


def _descriptor_set(tmp_path):
  import grpc_tools  # pylint: disable=g-import-not-at-top
  from google.protobuf import descriptor_pb2  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'set.pb'
  well_known = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto')
  # A child process: grpc_tools' protoc crashes in a process that has
  # imported TensorFlow.
  result = subprocess.run(
      [sys.executable, '-m', 'grpc_tools.protoc',
       f'-Iod_meta/protos={regenerate.PROTO_DIR}', f'-I{well_known}',
       '--include_source_info', f'--descriptor_set_out={out}'] + PROTO_FILES,
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  file_set = descriptor_pb2.FileDescriptorSet()
  file_set.ParseFromString(out.read_bytes())
  return file_set


# FileDescriptorProto / DescriptorProto / EnumDescriptorProto field numbers
# used in SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM = 4, 5
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2


def _elements(file_proto):
  """Yields (path tuple, name) of every documented element of a file."""

  def enum_elements(enum, path, prefix):
    yield path, f'{prefix}{enum.name}'
    for i, value in enumerate(enum.value):
      yield path + (_ENUM_VALUE, i), f'{prefix}{enum.name}.{value.name}'

  def message_elements(msg, path, prefix):
    name = f'{prefix}{msg.name}'
    if msg.options.map_entry:
      return
    yield path, name
    for i, field in enumerate(msg.field):
      yield path + (_MSG_FIELD, i), f'{name}.{field.name}'
    for i, oneof in enumerate(msg.oneof_decl):
      yield path + (_MSG_ONEOF, i), f'{name}.{oneof.name}'
    for i, nested in enumerate(msg.nested_type):
      yield from message_elements(nested, path + (_MSG_NESTED, i),
                                  f'{name}.')
    for i, enum in enumerate(msg.enum_type):
      yield from enum_elements(enum, path + (_MSG_ENUM, i), f'{name}.')

  for i, msg in enumerate(file_proto.message_type):
    yield from message_elements(msg, (_FILE_MESSAGE, i), '')
  for i, enum in enumerate(file_proto.enum_type):
    yield from enum_elements(enum, (_FILE_ENUM, i), '')


def test_every_element_has_a_comment(tmp_path):
  file_set = _descriptor_set(tmp_path)
  undocumented = []
  for file_proto in file_set.file:
    if not file_proto.name.startswith('od_meta/protos/'):
      continue
    comments = {}
    for location in file_proto.source_code_info.location:
      text = (location.leading_comments + location.trailing_comments).strip()
      if text:
        comments[tuple(location.path)] = text
    for path, name in _elements(file_proto):
      if path not in comments:
        undocumented.append(f'{file_proto.name}: {name}')
  assert not undocumented, 'elements without a comment:\n' + '\n'.join(
      undocumented)
