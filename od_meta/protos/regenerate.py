"""Regenerates the committed `od_meta/protos/*_pb2.py` from `protos/*.proto`.

The generated modules are committed so that users install od_meta without
protoc. After editing a `.proto` file run, from the repository root:

    python -m od_meta.protos.regenerate

which is the same as

    python -m grpc_tools.protoc -Iod_meta/protos=protos --python_out=. \
        protos/*.proto

The virtual-path mapping `od_meta/protos=protos` makes every generated module
import its dependencies as `od_meta.protos.<name>_pb2` and registers the files
in the descriptor pool as `od_meta/protos/<name>.proto`.
`tests/protos/test_generated_code_is_current.py` regenerates into a temporary
directory and compares the bytes with the committed files.

Requires grpcio-tools (a test / development dependency only; the generated code
needs just the protobuf runtime).
"""

import glob
import os
import subprocess
import sys

# Repository root: od_meta/protos/regenerate.py -> ../..
REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO_ROOT, 'protos')
GENERATED_SUBDIR = os.path.join('od_meta', 'protos')
COMMAND = 'python -m od_meta.protos.regenerate'


def proto_files(proto_dir=PROTO_DIR):
  """Returns the sorted absolute paths of `proto_dir/*.proto`.

  Raises:
    ValueError: if `proto_dir` holds no .proto file.
  """
  files = sorted(glob.glob(os.path.join(proto_dir, '*.proto')))
  if not files:
    raise ValueError(f'proto_dir {proto_dir!r} holds no .proto file')
  return files


def generated_name(proto_path):
  """`protos/ssd.proto` -> `ssd_pb2.py` (the generated module's file name)."""
  stem = os.path.splitext(os.path.basename(proto_path))[0]
  return f'{stem}_pb2.py'


def generate(output_root, proto_dir=PROTO_DIR):
  """Runs protoc (from grpcio-tools) on every `.proto` in `proto_dir`.

  Args:
    output_root: directory that plays the role of the repository root; the
      modules are written to `output_root/od_meta/protos/<name>_pb2.py`
      (created if needed). Pass `REPO_ROOT` to update the committed files.
    proto_dir: directory of the `.proto` sources (default `<repo>/protos`).

  Returns:
    Sorted list of the absolute paths of the generated files.

  Raises:
    ImportError: if grpcio-tools is not installed.
    ValueError: if `proto_dir` has no .proto file.
    RuntimeError: if protoc fails (its message is printed to stderr).
  """
  import grpc_tools  # pylint: disable=g-import-not-at-top

  files = proto_files(proto_dir)
  os.makedirs(os.path.join(output_root, GENERATED_SUBDIR), exist_ok=True)
  well_known = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto')
  args = [sys.executable, '-m', 'grpc_tools.protoc',
          f'-Iod_meta/protos={proto_dir}',
          f'-I{well_known}',
          f'--python_out={output_root}'] + files
  # protoc runs in a child process: in a process that has imported
  # TensorFlow, grpc_tools' bundled protobuf library crashes (segfault).
  result = subprocess.run(args, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    sys.stderr.write(result.stderr)
    raise RuntimeError(f'protoc failed with status {result.returncode} on '
                       f'{proto_dir}: {result.stderr.strip()}')
  return sorted(os.path.join(output_root, GENERATED_SUBDIR, generated_name(f))
                for f in files)


def main(argv=None):
  """Regenerates the committed modules; returns a process exit code."""
  del argv
  paths = generate(REPO_ROOT)
  for path in paths:
    print(os.path.relpath(path, REPO_ROOT))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
