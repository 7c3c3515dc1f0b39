"""Inference time per image at batch 1 (Huang et al. 2017, Sec. 3.5).

The paper times each detector at batch size 1, pre- and post-processing
(non-max suppression) included, averaged over 500 images. We report the
*median* over the timed images after a warm-up (the first calls trace the
`tf.function`s and fill caches), and time three `tf.function`s of the
`DetectionModel` contract on every image so that the share of each part is
visible:

  * total: resize (the model's image resizer, when given) -> `preprocess`
    -> `predict` -> `postprocess`, from the decoded image to the final
    detections copied to host memory;
  * network: `predict` alone, on already preprocessed inputs (every
    tensor of the prediction dict is materialized, also those that
    `postprocess` does not use and that the total graph prunes, so the
    network alone can take a little longer than the total);
  * postprocess: `postprocess` alone, on already computed predictions.

Every call ends by copying all outputs to NumPy, which also waits for a GPU
to finish. No protos here: the caller passes the built model and resizer.
"""

import dataclasses
import os
import platform
import statistics
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TimingStats:
  """Statistics of per-call wall times, milliseconds.

  Attributes:
    median_ms, mean_ms, p10_ms, p90_ms, min_ms: over the timed calls.
    num_timed: number of timed calls (warm-up excluded).
    num_warmup: number of untimed warm-up calls before them.
  """
  median_ms: float
  mean_ms: float
  p10_ms: float
  p90_ms: float
  min_ms: float
  num_timed: int
  num_warmup: int


def summarize(times_ms: Sequence[float], num_warmup: int = 0) -> TimingStats:
  """`TimingStats` of a list of per-call times (ms, warm-up excluded).

  Raises:
    ValueError: on an empty list or a NaN / negative time.
  """
  times = [float(t) for t in times_ms]
  if not times:
    raise ValueError('times_ms is empty: nothing was timed')
  if any(not np.isfinite(t) or t < 0 for t in times):
    raise ValueError(f'times_ms holds a negative or non-finite time: {times}')
  return TimingStats(
      median_ms=statistics.median(times), mean_ms=statistics.fmean(times),
      p10_ms=float(np.percentile(times, 10)),
      p90_ms=float(np.percentile(times, 90)), min_ms=min(times),
      num_timed=len(times), num_warmup=int(num_warmup))


def _block(outputs):
  """Copies every tensor of a nested structure to host (waits for it)."""
  for tensor in tf.nest.flatten(outputs):
    if isinstance(tensor, (tf.Tensor, tf.Variable)):
      tensor.numpy()


def time_calls(fn: Callable, inputs: Sequence, *, num_timed: int,
               num_warmup: int = 5,
               clock: Callable[[], float] = time.perf_counter
               ) -> TimingStats:
  """Times `fn(*inputs[i])` call by call.

  Calls cycle through `inputs`: the first `num_warmup` calls are not timed,
  the next `num_timed` are. Each call's outputs are copied to host before
  the clock stops.

  Args:
    fn: callable taking the unpacked elements of one input tuple.
    inputs: non-empty list of argument tuples.
    num_timed: >= 1 timed calls.
    num_warmup: >= 0 untimed calls first.
    clock: seconds clock (injectable for tests).

  Raises:
    ValueError: on empty inputs, num_timed < 1 or num_warmup < 0.
  """
  if not inputs:
    raise ValueError('inputs is empty: give at least one image')
  if int(num_timed) < 1 or int(num_warmup) < 0:
    raise ValueError(f'num_timed must be >= 1 and num_warmup >= 0, got '
                     f'{num_timed} and {num_warmup}')
  times = []
  for call in range(int(num_warmup) + int(num_timed)):
    args = inputs[call % len(inputs)]
    start = clock()
    _block(fn(*args))
    elapsed_ms = (clock() - start) * 1000.0
    if call >= num_warmup:
      times.append(elapsed_ms)
  return summarize(times, num_warmup)


def _check_images(images):
  if not images:
    raise ValueError('images is empty: give at least one image')
  for i, image in enumerate(images):
    shape = np.shape(image)
    if len(shape) != 3 or shape[-1] != 3:
      raise ValueError(f'images[{i}] must be [height, width, 3], got shape '
                       f'{shape}')


class _JitOrFallback:
  """Calls an XLA-compiled function; on a compilation error, the plain one.

  `compiled` is None before the first call, then whether XLA compiled it;
  `reason` gives XLA's error line when it did not.
  """

  _ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
             tf.errors.InternalError)

  def __init__(self, python_fn):
    self._jit = tf.function(python_fn, jit_compile=True,
                            reduce_retracing=True)
    self._plain = tf.function(python_fn, reduce_retracing=True)
    self.compiled = None
    self.reason = ''

  def get_concrete_function(self, *args):
    return self._plain.get_concrete_function(*args)

  def __call__(self, *args):
    if self.compiled is False:
      return self._plain(*args)
    try:
      outputs = self._jit(*args)
    except self._ERRORS as e:
      if self.compiled:
        raise
      lines = [line.strip() for line in e.message.splitlines()
               if line.strip()]
      detail = [line for line in lines if 'unsupported' in line.lower() or
                'compile-time constant' in line]
      self.reason = ((detail or lines or [type(e).__name__])[0])[:400]
      self.compiled = False
      return self._plain(*args)
    self.compiled = True
    return outputs


def make_inference_functions(detection_model, image_resizer_fn=None,
                             jit_compile=False):
  """The three timed `tf.function`s of a `DetectionModel` at batch 1.

  Args:
    detection_model: a built `DetectionModel` (weights restored).
    image_resizer_fn: optional `[H, W, 3] float32 -> (resized float32
      [H', W', 3], int32 [3] true shape)` (the model's image resizer); None
      when the images are already resized.
    jit_compile: compile 'total', 'network' and 'postprocess' with XLA
      (`tf.function(jit_compile=True)`); a function XLA cannot compile
      (e.g. a dynamic-shape NMS) runs as a plain graph instead, which its
      `compiled` / `reason` attributes record after the first call.

  Returns:
    dict with
      'total': fn(image float32 [1, H, W, 3] in [0, 255]) -> detections;
      'preprocess': fn(image) -> (preprocessed, true_shapes) (untimed helper);
      'network': fn(preprocessed, true_shapes) -> prediction dict;
      'postprocess': fn(prediction dict, true_shapes) -> detections.
  """
  def resize(images):
    if image_resizer_fn is None:
      shape = tf.shape(images)
      return images, tf.stack([shape[1], shape[2], shape[3]])[tf.newaxis]
    resized, true_shape = image_resizer_fn(images[0])
    return resized[tf.newaxis], tf.cast(true_shape, tf.int32)[tf.newaxis]

  @tf.function(reduce_retracing=True)
  def preprocess(images):
    resized, true_shapes = resize(images)
    return detection_model.preprocess(resized, true_shapes)

  def network(preprocessed, true_shapes):
    return detection_model.predict(preprocessed, true_shapes, training=False)

  def postprocess(predictions, true_shapes):
    return detection_model.postprocess(predictions, true_shapes)

  def total(images):
    resized, true_shapes = resize(images)
    preprocessed, true_shapes = detection_model.preprocess(resized,
                                                           true_shapes)
    predictions = detection_model.predict(preprocessed, true_shapes,
                                          training=False)
    return detection_model.postprocess(predictions, true_shapes)

  if jit_compile:
    wrap = _JitOrFallback
  else:
    wrap = lambda fn: tf.function(fn, reduce_retracing=True)  # pylint: disable=unnecessary-lambda-assignment
  return {'total': wrap(total), 'preprocess': preprocess,
          'network': wrap(network), 'postprocess': wrap(postprocess)}


def jit_status(functions) -> Dict[str, Dict]:
  """{name: {'compiled': bool or None, 'reason': str}} of XLA functions."""
  return {name: {'compiled': fn.compiled, 'reason': fn.reason}
          for name, fn in functions.items() if isinstance(fn, _JitOrFallback)}


def time_inference(detection_model, images: Sequence[np.ndarray], *,
                   num_images: int, num_warmup: int = 10,
                   image_resizer_fn=None,
                   after_warmup: Optional[Callable[[], None]] = None,
                   after_timing: Optional[Callable[[], None]] = None,
                   clock: Callable[[], float] = time.perf_counter,
                   jit_compile: bool = False,
                   jit_report: Optional[Dict] = None
                   ) -> Dict[str, TimingStats]:
  """Batch-1 inference times of a detector (Huang et al. 2017, Sec. 3.5).

  The three functions are timed *interleaved*, image by image (total, then
  network on that image's preprocessed input, then postprocess on that
  network call's outputs), so that a load change on a shared machine hits
  all three alike. Only the current image's tensors are alive at a time.

  Args:
    detection_model: a built `DetectionModel` (weights restored).
    images: list of images `[H, W, 3]` (uint8 or float, values in [0, 255],
      pixels) before resizing; cycled when fewer than num_images.
    num_images: number of timed images (the paper: 500).
    num_warmup: untimed rounds (of all three functions) before timing.
    image_resizer_fn: the model's resizer (see `make_inference_functions`);
      None when `images` are already model-sized.
    after_warmup: optional callback run once between the warm-up and the
      timed rounds (e.g. to reset a peak-memory counter).
    after_timing: optional callback run once right after the timed rounds
      (e.g. to read that peak).
    clock: seconds clock (injectable for tests).
    jit_compile: time the XLA-compiled functions (see
      `make_inference_functions`); the compilation happens in the warm-up.
    jit_report: optional dict filled with `jit_status` of the functions.

  Returns:
    dict 'total' / 'network' / 'postprocess' -> `TimingStats`.

  Raises:
    ValueError: on no images, an image not `[H, W, 3]`, num_images < 1 or
      num_warmup < 0.
  """
  _check_images(images)
  if int(num_images) < 1 or int(num_warmup) < 0:
    raise ValueError(f'num_images must be >= 1 and num_warmup >= 0, got '
                     f'{num_images} and {num_warmup}')
  functions = make_inference_functions(detection_model, image_resizer_fn,
                                       jit_compile=jit_compile)
  batches = [tf.constant(np.asarray(image, np.float32)[np.newaxis])
             for image in images[:num_images]]
  times = {'total': [], 'network': [], 'postprocess': []}

  def timed(name, fn, *args):
    start = clock()
    outputs = fn(*args)
    _block(outputs)
    times[name].append((clock() - start) * 1000.0)
    return outputs

  for round_index in range(int(num_warmup) + int(num_images)):
    if round_index == int(num_warmup) and after_warmup is not None:
      after_warmup()
    image = batches[round_index % len(batches)]
    timed('total', functions['total'], image)
    preprocessed, true_shapes = functions['preprocess'](image)  # Untimed.
    predictions = timed('network', functions['network'], preprocessed,
                        true_shapes)
    timed('postprocess', functions['postprocess'], predictions, true_shapes)
  if after_timing is not None:
    after_timing()
  if jit_report is not None:
    jit_report.update(jit_status(functions))
  return {name: summarize(values[int(num_warmup):], num_warmup)
          for name, values in times.items()}


def device_description() -> Dict[str, str]:
  """Where the timings were taken: device, TF version, host.

  Returns:
    dict with 'device' ('GPU: <name>' of the first visible GPU, else
    'CPU: <model> (<n> cores)'), 'tf_version', 'python_version' and
    'platform'.
  """
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    device = f"GPU: {details.get('device_name', gpus[0].name)}"
  else:
    model = platform.processor() or platform.machine()
    try:
      with open('/proc/cpuinfo', encoding='utf-8') as f:
        for line in f:
          if line.startswith('model name'):
            model = line.split(':', 1)[1].strip()
            break
    except OSError:
      pass
    cores = len(os.sched_getaffinity(0)) if hasattr(
        os, 'sched_getaffinity') else os.cpu_count()
    device = f'CPU: {model} ({cores} cores)'
  return {'device': device, 'tf_version': tf.__version__,
          'python_version': platform.python_version(),
          'platform': platform.platform()}


def times_to_dict(stats: Dict[str, TimingStats]) -> Dict[str, Dict]:
  """JSON-ready dict of `time_inference`'s result."""
  return {k: dataclasses.asdict(v) for k, v in stats.items()}

