"""Guards of a training run folder: one trainer at a time, no stale temps.

* `RunFolderLock`: `model_dir/.od_meta_train.lock` holds the trainer's PID,
  host and start time while it runs. A second trainer on the same folder
  fails at once with a line naming the holder; a lock left by a process that
  no longer runs (same host) is taken over with a warning. A lock from
  another host cannot be checked and is reported with the file to delete.
* `remove_stale_temp_checkpoints`: `tf.train.CheckpointManager` writes a
  checkpoint into `ckpt-N_temp/` before renaming its files; a process killed
  in between leaves the folder behind. The next start removes it (the
  complete checkpoints are untouched).

Only local folders are locked (a path with '://' is not).
"""

import datetime
import json
import os
import re
import shutil
import socket
from typing import Callable, List

LOCK_FILE = '.od_meta_train.lock'
_TEMP_CHECKPOINT = re.compile(r'^ckpt-\d+_temp(_[0-9a-f]+)?$')


class RunFolderLockedError(ValueError):
  """Another live trainer holds the run folder."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Alive, owned by another user.
  return True


class RunFolderLock:
  """Exclusive use of a training run folder by one process.

  Args:
    model_dir: the run folder (must exist).
    print_fn: where the take-over warning goes.

  Use as a context manager (or `acquire()` / `release()`).

  Raises (on acquire):
    RunFolderLockedError: when a live process (or one on another host)
      holds the folder; the message names its PID, host and start time.
  """

  def __init__(self, model_dir: str, print_fn: Callable[[str], None] = print):
    self.model_dir = model_dir
    self.path = os.path.join(model_dir, LOCK_FILE)
    self._print = print_fn
    self._held = False

  @property
  def enabled(self) -> bool:
    return '://' not in self.model_dir

  def _holder(self) -> dict:
    try:
      with open(self.path, encoding='utf-8') as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def acquire(self) -> 'RunFolderLock':
    if not self.enabled or self._held:
      return self
    record = json.dumps({
        'pid': os.getpid(), 'host': socket.gethostname(),
        'started': datetime.datetime.now().isoformat(timespec='seconds')})
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._holder()
        pid, host = holder.get('pid'), holder.get('host')
        if (isinstance(pid, int) and host == socket.gethostname() and
            _pid_alive(pid) and pid != os.getpid()):
          raise RunFolderLockedError(
              f'{self.model_dir} is used by another trainer (PID {pid} on '
              f'{host}, since {holder.get("started")}); use another '
              '--model_dir or stop that process') from None
        if host and host != socket.gethostname():
          raise RunFolderLockedError(
              f'{self.model_dir} is locked by a trainer on host {host} (PID '
              f'{pid}, since {holder.get("started")}); if it is no longer '
              f'running, delete {self.path}') from None
        self._print(f'WARNING: taking over {self.path} left by a trainer '
                    f'that is no longer running (PID {pid}, since '
                    f'{holder.get("started")})')
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
        continue
      with os.fdopen(fd, 'w', encoding='utf-8') as f:
        f.write(record + '\n')
      self._held = True
      return self
    raise RunFolderLockedError(f'could not take the lock {self.path}')

  def release(self):
    if self._held:
      holder = self._holder()
      if holder.get('pid') == os.getpid():
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
      self._held = False

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
    return False


def remove_stale_temp_checkpoints(model_dir: str) -> List[str]:
  """Removes `ckpt-N_temp*` folders of interrupted checkpoint writes.

  Call it while holding the run folder's lock (no writer can be active).

  Returns:
    the removed paths.
  """
  if '://' in model_dir or not os.path.isdir(model_dir):
    return []
  removed = []
  for name in sorted(os.listdir(model_dir)):
    path = os.path.join(model_dir, name)
    if _TEMP_CHECKPOINT.match(name) and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
  return removed
