"""Peak memory of inference, and running a measurement in a child process.

Huang et al. 2017 (Sec. 3.5, 4.1.8) report the total memory a detector needs
at inference. We measure:

  * on GPU: TensorFlow's allocator statistics (`tf.config.experimental.
    get_memory_info(device)['peak']`, bytes), reset before the timed run;
  * on CPU: the process's peak resident set size (Linux `VmHWM` in
    /proc/self/status, else `getrusage(RUSAGE_SELF).ru_maxrss`). The peak
    can be reset on Linux (`/proc/self/clear_refs` <- '5'), so it covers the
    inference only; the resident size before the model was built (the
    TensorFlow runtime) is the baseline that the study subtracts.

Every configuration is measured in its own child process (`run_child`) so
that configurations do not pollute each other's peak. No protos here.
"""

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'


def _status_bytes(field: str) -> Optional[int]:
  """A `kB` field of /proc/self/status in bytes, or None if unavailable."""
  try:
    with open(_STATUS, encoding='utf-8') as f:
      match = re.search(rf'^{field}:\s+(\d+)\s+kB', f.read(), re.M)
  except OSError:
    return None
  return int(match.group(1)) * 1024 if match else None


def current_rss_bytes() -> Optional[int]:
  """Current resident set size of this process, bytes (None if unknown)."""
  return _status_bytes('VmRSS')


def peak_rss_bytes() -> int:
  """Peak resident set size of this process, bytes.

  `VmHWM` when /proc is there (honours `reset_peak_rss`), else
  `ru_maxrss` (KiB on Linux, bytes on macOS).
  """
  hwm = _status_bytes('VmHWM')
  if hwm is not None:
    return hwm
  maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(maxrss) if sys.platform == 'darwin' else int(maxrss) * 1024


def reset_peak_rss() -> bool:
  """Resets the peak RSS to the current RSS (Linux >= 4.0).

  Returns:
    True if the peak was reset, False where the kernel does not allow it
    (then `peak_rss_bytes` is the whole process's peak).
  """
  try:
    with open(_CLEAR_REFS, 'w', encoding='utf-8') as f:
      f.write('5')
    return True
  except OSError:
    return False


def gpu_memory_info(device: str = 'GPU:0') -> Optional[Dict[str, int]]:
  """TensorFlow's allocator statistics on `device` ({'current', 'peak'} bytes).

  Returns None when TensorFlow sees no such device.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.config.list_physical_devices('GPU'):
    return None
  try:
    return dict(tf.config.experimental.get_memory_info(device))
  except (ValueError, tf.errors.NotFoundError):
    return None


def reset_gpu_peak(device: str = 'GPU:0') -> bool:
  """Resets TF's peak-memory counter of `device`; False without a GPU."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.config.list_physical_devices('GPU'):
    return False
  tf.config.experimental.reset_memory_stats(device)
  return True


class ChildProcessFailed(RuntimeError):
  """A measurement child process exited with an error.

  Attributes:
    returncode: its exit status (None on timeout).
    stderr_tail: the last lines of its stderr.
  """

  def __init__(self, message, returncode=None, stderr_tail=''):
    super().__init__(message)
    self.returncode = returncode
    self.stderr_tail = stderr_tail


def _last_error_line(stderr: str) -> str:
  """The most informative line of a Python traceback (the exception)."""
  lines = [l for l in stderr.strip().splitlines() if l.strip()]
  for line in reversed(lines):
    if re.match(r'^[A-Za-z_.]*(Error|Exception|Failed)\b.*:', line.strip()):
      return line.strip()
  return lines[-1].strip() if lines else ''


def run_child(module: str, args: Sequence[str], *, timeout_s: float = 900,
              env: Optional[Dict[str, str]] = None,
              cwd: Optional[str] = None) -> Dict[str, Any]:
  """Runs `python -m module args --output_json=<tmp>`; returns the JSON.

  The child writes one JSON object to the path given by `--output_json`.
  The package root is put first on PYTHONPATH so the child imports the
  same od_meta.

  Args:
    module: dotted module name run with `python -m`.
    args: extra command-line arguments.
    timeout_s: seconds before the child is killed.
    env: extra environment variables.
    cwd: working directory of the child (default: the current one).

  Returns:
    the dict the child wrote.

  Raises:
    ChildProcessFailed: on a non-zero exit, a timeout or a missing / bad
      JSON output; the message ends with the child's error line.
  """
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  child_env = dict(os.environ)
  child_env.update(env or {})
  child_env['PYTHONPATH'] = os.pathsep.join(
      [package_root] + [p for p in
                        child_env.get('PYTHONPATH', '').split(os.pathsep)
                        if p])
  child_env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  fd, output = tempfile.mkstemp(suffix='.json', prefix='od_meta_child_')
  os.close(fd)
  try:
    command = [sys.executable, '-m', module, *args,
               f'--output_json={output}']
    try:
      proc = subprocess.run(command, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env,
                            cwd=cwd, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
      stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (
          e.stderr or '')
      raise ChildProcessFailed(
          f'{module} timed out after {timeout_s:.0f} s',
          stderr_tail=stderr[-3000:]) from None
    if proc.returncode != 0:
      raise ChildProcessFailed(
          f'{module} exited with status {proc.returncode}: '
          f'{_last_error_line(proc.stderr)}', returncode=proc.returncode,
          stderr_tail=proc.stderr[-3000:])
    try:
      with open(output, encoding='utf-8') as f:
        return json.load(f)
    except (OSError, ValueError) as e:
      raise ChildProcessFailed(
          f'{module} wrote no valid JSON to {output}: {e}',
          returncode=proc.returncode,
          stderr_tail=proc.stderr[-3000:]) from None
  finally:
    if os.path.exists(output):
      os.remove(output)
