"""benchmarks/kill_resume_soak.py with one SIGKILL: the trainer resumes.

The script trains the tiny SSD in a child process, SIGKILLs it after its
first step, restarts it, and checks the resume step, the checkpoints
(readable, finite), the temp folders and the lock take-over. The full soak
(20 kills) is the script's default; here one kill keeps the test short.
"""

import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_one_kill_resumes(tmp_path):
  proc = subprocess.run(
      [sys.executable, os.path.join(_REPO, 'benchmarks',
                                    'kill_resume_soak.py'),
       '--kills=1', '--max_wait_s=1.0', f'--output_dir={tmp_path}'],
      capture_output=True, text=True, timeout=600, check=False)
  out = proc.stdout
  assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
  assert '1 kills: 1 resumes' in out
  assert '1 stale locks taken over' in out
  assert 'failures: 0' in out
  run1 = [line for line in out.splitlines() if line.startswith('run 1:')][0]
  assert 'resumed at None' not in run1
