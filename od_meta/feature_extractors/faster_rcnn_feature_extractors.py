"""Two-stage (Faster R-CNN / R-FCN) feature extractors on keras.applications.

A Faster R-CNN feature extractor is a classification network cut in two
(Ren et al. 2015, "Faster R-CNN", section 3; Huang et al. 2017,
"Speed/accuracy trade-offs", section 3.6.1 and Table 2), mirroring the TF
Object Detection API's Keras `FasterRCNNKerasFeatureExtractor`:

  * `extract_proposal_features(preprocessed [B, H, W, 3])`: the first stage,
    up to a stride-16 (or atrous stride-8) layer; its map feeds the RPN and
    is cropped per proposal (`crop_and_resize` to `initial_crop_size`, then
    an optional 2x2 max-pool, done by the meta-architecture);
  * `extract_box_classifier_features(crops [M, h, w, C1])`: the second stage,
    the rest of the network applied to each crop; the box classifier runs
    on its output (the TF OD API's R-FCN applies it to the whole
    first-stage map instead, see `conv5_stride` of the ResNets).

Split per extractor, keras layer names (slim / paper names in brackets);
the first stage feeds the RPN, C1 = its channels (a = MobileNetV2 alpha):

  type string                            first stage ends at     stride  C1
  faster_rcnn_resnet50_keras             conv4_block6_out [block3] 16|8 1024
  faster_rcnn_resnet101_keras            conv4_block23_out [block3] 16|8 1024
  faster_rcnn_mobilenet_v2_keras         block_12_add                16 96a
  faster_rcnn_vgg16_keras                block5_conv3 [conv5_3]      16  512
  faster_rcnn_inception_v3_keras         mixed7 [Mixed_6e]           16  768
  faster_rcnn_inception_resnet_v2_keras  block17_20_ac [Mixed_6a and
                                         its 20 block17 units]       16 1088
  (96a: make_divisible(96 * alpha, 8))

  second stage (on crops [M, h, w, C1])           output for the default crop
  ResNet: conv5_block1..3 (conv5_block1 keeps      7x7 -> [M, 4, 4, 2048]
    its stride 2, as the TF OD API Keras model)
  MobileNetV2: block_13 (stride 2) .. out_relu     7x7 -> [M, 4, 4, 1280*]
  VGG16: flatten, fc6, fc7 (ReLU, width fc_depth)  7x7 -> [M, 1, 1, fc_depth]
  InceptionV3: mixed8 (Mixed_7a, 3x3/2 'valid')
    .. mixed10                                    17x17 -> [M, 8, 8, 2048]
  InceptionResNetV2: mixed_7a ('valid') .. block8
    units .. conv_7b_ac (Conv2d_7b_1x1)           17x17 -> [M, 8, 8, 1536]
  (* 1280 for alpha <= 1, keras.applications' rule)

Why these layers: ResNet, VGG, InceptionV3 and InceptionResNetV2 follow
Huang et al. 2017 section 3.6.1 ('conv4' block, 'conv5', 'Mixed_6e',
'Mixed_6a with its residual layers') and the TF OD API's Keras extractors
(`conv4_block{6,23}_out`, `block17_20_ac`). MobileNetV2 has no entry in the
paper; MobileNet(V1) uses 'Conv2d_11', the last layer at stride 16. The
MobileNetV2 analogue is `block_12_add`, the output of the last stride-16
bottleneck (the stage output `keras_app_backbones` also uses), rather than
`block_13_expand_relu`: the expansion conv of block 13 then belongs to the
second stage with the rest of that block, the crops are 96*alpha channels
wide instead of 576*alpha (6x less memory per crop), and block 13 runs
whole on each crop.

Spatial sizes ('SAME' semantics, H1 = ceil(H / stride) for every H):
  * ResNet: keras' symmetric ZeroPadding2D + 'valid' stem gives ceil already.
  * MobileNetV2 and VGG16: keras' stride-2 ZeroPadding2D(correct_pad) +
    'valid' depthwise convs (which pad by (0, 1) whenever the static shape
    is unknown) and 'valid' 2x2 max-pools floor odd sizes; they are rebuilt
    with 'same' padding (identical results for even sizes, ceil for odd;
    weights unchanged).
  * InceptionV3 / InceptionResNetV2: their stems and Mixed_6a use 'valid'
    3x3 convs / pools (keras: 299 -> 17 at stride 16, 64 -> 2). With
    `align_feature_maps=True` (default, as the TF OD API's Inception-ResNet
    extractors) every 'valid' padding of the first stage becomes 'same', so
    H1 = ceil(H / 16) exactly; with False, keras' own sizes are kept (e.g.
    H1 = 17 for H = 299, 2 for H = 64; roughly (H - 27) / 16). The second
    stage keeps the 'valid' Mixed_7a, so the default 17x17 crop (the size of
    the stride-16 map of a 299 ImageNet image, paper: "crop and resize to
    17x17", no max-pool) gives 8x8: that is why `default_initial_crop_size`
    is 17 for them and 14 (then 2x2 max-pool to 7) for the others.

Atrous (first_stage_features_stride=8, ResNets only): conv4_block1's
stride-2 1x1 convs (main and shortcut) get stride 1 and every conv4 3x3 conv
dilation 2 (slim `output_stride=8`); kernel shapes are unchanged, so
ImageNet weights still load. The second stage is unchanged (its optional
`conv5_stride=1`, for R-FCN's stride-16 conv5, is described in the ResNet
class).

Batch norm: `batch_norm_trainable=False` (TF OD API default for Faster
R-CNN; paper: "we fix the batch normalization parameters to be those
estimated during ImageNet pretraining") makes every backbone batch norm a
`FrozenBatchNormalization`: inference mode whatever `training` says, gamma /
beta not trainable, keras' epsilon kept. With True they are ordinary (fused)
batch norms taking momentum / epsilon from `conv_hyperparams`.

Both stages are Keras functional models over the SAME layer objects as the
full keras.applications network (`keras_model`), so 'imagenet' weights or a
restored checkpoint apply to both.
"""

import re
from typing import Callable, Optional, Set

import keras
import tensorflow as tf

from od_meta.feature_extractors import batch_norm as batch_norm_lib
from od_meta.feature_extractors import conv_hyperparams as hyperparams_lib
from od_meta.feature_extractors import ssd_feature_extractor
from od_meta.utils import keras_tracking

_KERAS_WEIGHTS = (None, 'imagenet')


@keras.saving.register_keras_serializable(package='od_meta')
class FrozenBatchNormalization(batch_norm_lib.FusedBatchNormalization):
  """Batch norm fixed to its (ImageNet) statistics and affine parameters.

  Always normalizes with the moving mean / variance (inference mode),
  whatever `training` is, and creates gamma / beta as non-trainable
  variables, so neither the optimizer nor batch statistics change it
  (Huang et al. 2017, section 3.6.1; TF OD API `FreezableBatchNorm(
  training=False)`). Setting `trainable=True` on a parent does not unfreeze
  it. Input / output: float [B, H, W, C], same constructor arguments and
  variables as `keras.layers.BatchNormalization`, so checkpoints and
  ImageNet weights load unchanged.
  """

  def build(self, input_shape):
    super().build(input_shape)
    for variable in (getattr(self, 'gamma', None), getattr(self, 'beta', None)):
      if variable is not None:
        variable.trainable = False

  def call(self, inputs, training=None, mask=None):
    del training
    return super().call(inputs, training=False, mask=mask)


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


# edit(layer, config, in_first_stage) -> replacement layer or None; it may
# modify `config` in place (the clone is then `type(layer).from_config`).
EditFn = Callable[[keras.layers.Layer, dict, bool],
                  Optional[keras.layers.Layer]]


def _clone_with_edits(model: keras.Model, edit: EditFn,
                      first_stage_names: Set[str],
                      freeze_batch_norm: bool):
  """Clones a functional model, editing layer configs, and copies weights.

  Args:
    model: functional keras model (after `with_fused_batch_norm`).
    edit: see `EditFn`.
    first_stage_names: names of the layers up to the split point.
    freeze_batch_norm: batch norms become `FrozenBatchNormalization`.

  Returns:
    (clone, names): every layer of the clone whose weight shapes are
    unchanged has the original weights; `names` lists the layers whose
    shapes an edit changed (they keep their fresh initialization).
  """

  def clone_fn(layer):
    config = layer.get_config()
    if isinstance(layer, keras.layers.BatchNormalization):
      cls = (FrozenBatchNormalization if freeze_batch_norm else
             batch_norm_lib.FusedBatchNormalization)
      return cls.from_config(config)
    new = edit(layer, config, layer.name in first_stage_names)
    return new if new is not None else layer.__class__.from_config(config)

  clone = keras.models.clone_model(model, clone_function=clone_fn)
  reinitialized = []
  clone_layers = {layer.name: layer for layer in clone.layers}
  for layer in model.layers:
    weights = layer.get_weights()
    if not weights:
      continue
    target = clone_layers[layer.name]
    if [w.shape for w in weights] == [tuple(w.shape) for w in target.weights]:
      target.set_weights(weights)
    else:
      reinitialized.append(layer.name)
  return clone, reinitialized


def _to_float32(images) -> tf.Tensor:
  """Converts a tensor / array of any real dtype to float32."""
  images = tf.convert_to_tensor(images)
  return images if images.dtype == tf.float32 else tf.cast(images,
                                                           tf.float32)


def _check_images(images: tf.Tensor, name: str, channels: int) -> tf.Tensor:
  images = _to_float32(images)
  if images.shape.rank != 4:
    raise ValueError(f'{name} must be [B, H, W, {channels}], got shape '
                     f'{images.shape}')
  if images.shape[-1] is not None and images.shape[-1] != channels:
    raise ValueError(f'{name} must have {channels} channels, got shape '
                     f'{images.shape}')
  return images


class FasterRCNNFeatureExtractor(keras_tracking.CheckpointTrackedCollections,
                                 tf.keras.layers.Layer):
  """Base two-stage feature extractor (see the module docstring).

  Subclasses build the stages in their constructor with `_build_stages`.

  Args (keyword-only):
    first_stage_features_stride: 8 or 16, stride in input pixels of the
      first-stage map; subclasses accept 16 and, ResNets only, 8.
    batch_norm_trainable: False freezes the backbone's batch norms
      (inference mode, gamma / beta not trainable); True trains them with
      momentum / epsilon from `conv_hyperparams`.
    weights: None or '' (random init, no download), 'imagenet'
      (keras.applications ImageNet weights, downloaded by Keras), or a path
      (built with random weights, kept in `backbone_weights` and loaded by
      `restore_backbone_weights()`).
    conv_hyperparams: None, a `ConvHyperparams` or a dict of its fields:
      batch-norm momentum / epsilon for `batch_norm_trainable=True`, and the
      initializer / L2 regularizer of the layers od_meta adds (VGG fc6/fc7).
    name: layer name (default: the class' `_DEFAULT_NAME`, e.g.
      'faster_rcnn_resnet50_feature_extractor').

  Raises:
    ValueError: a stride the extractor does not support, bad `weights` or
      `conv_hyperparams`.
  """

  _SUPPORTED_STRIDES = (16,)
  _DEFAULT_NAME = 'faster_rcnn_feature_extractor'

  def __init__(self, *, first_stage_features_stride: int = 16,
               batch_norm_trainable: bool = False, weights=None,
               conv_hyperparams=None, name: Optional[str] = None):
    super().__init__(name=name or self._DEFAULT_NAME)
    if first_stage_features_stride not in self._SUPPORTED_STRIDES:
      raise ValueError(
          f'first_stage_features_stride must be one of '
          f'{self._SUPPORTED_STRIDES} for {type(self).__name__}, got '
          f'{first_stage_features_stride!r}')
    if weights == '':
      weights = None
    if weights is not None and not isinstance(weights, str):
      raise ValueError(f'weights must be None, "", "imagenet" or a path, got '
                       f'{weights!r}')
    self._first_stage_features_stride = int(first_stage_features_stride)
    self._batch_norm_trainable = bool(batch_norm_trainable)
    self.backbone_weights = weights
    self._conv_hyperparams = hyperparams_lib.ConvHyperparams.create(
        conv_hyperparams)
    self._keras_model = None
    self._first_stage = None
    self._second_stage = None
    self._proposal_feature_channels = None
    self._box_classifier_feature_channels = None

  # --- construction helpers (subclasses) -------------------------------------

  def _build_stages(self, base: keras.Model, *, proposal_layer: str,
                    classifier_layer: Optional[str], edit: EditFn,
                    check_stride: bool = True) -> None:
    """Builds `keras_model` and the two stage models from `base`.

    Args:
      base: a keras.applications functional model (raw; the fused batch
        norm is applied here).
      proposal_layer: name of the last first-stage layer.
      classifier_layer: name of the last second-stage layer, or None when the
        subclass builds its own second stage (VGG16).
      edit: per-layer config edit (`EditFn`).
      check_stride: verify by shape inference that `proposal_layer` has
        `first_stage_features_stride` with 'SAME' sizes.

    Raises:
      ValueError: the layer's stride is not the configured one, or weights
        cannot be loaded into layers whose shapes an edit changed.
    """
    base = batch_norm_lib.with_fused_batch_norm(base)
    inputs = base.inputs[0]
    first_names = {
        layer.name for layer in keras.Model(
            inputs, base.get_layer(proposal_layer).output).layers}
    full, changed = _clone_with_edits(
        base, edit, first_names,
        freeze_batch_norm=not self._batch_norm_trainable)
    if changed and self.backbone_weights == 'imagenet':
      raise ValueError(f'weights="imagenet": layers {changed[:5]} change shape '
                       'in this configuration, ImageNet weights cannot load')
    if self._batch_norm_trainable:
      ssd_feature_extractor.configure_backbone_batch_norm(
          full, self._conv_hyperparams)
    inputs = full.inputs[0]
    proposal = full.get_layer(proposal_layer).output
    if check_stride:
      probe = 1024
      size = keras.Model(inputs, proposal).compute_output_shape(
          (1, probe, probe, 3))[1]
      expected = _ceil_div(probe, self._first_stage_features_stride)
      if size != expected:
        raise ValueError(f'{proposal_layer} has size {size} on a {probe} '
                         f'input, expected {expected} (stride '
                         f'{self._first_stage_features_stride})')
    if classifier_layer is None:
      self._keras_model = keras.Model(inputs, proposal, name=base.name)
      self._second_stage = None
    else:
      classifier = full.get_layer(classifier_layer).output
      self._keras_model = keras.Model(inputs, classifier, name=base.name)
      self._second_stage = keras.Model(proposal, classifier,
                                       name=f'{base.name}_second_stage')
      self._box_classifier_feature_channels = int(classifier.shape[-1])
    self._first_stage = keras.Model(inputs, proposal,
                                    name=f'{base.name}_first_stage')
    self._proposal_feature_channels = int(proposal.shape[-1])
    self.built = True

  # --- public API -------------------------------------------------------------

  @property
  def first_stage_features_stride(self) -> int:
    """Stride (input pixels per cell) of the first-stage map: 8 or 16."""
    return self._first_stage_features_stride

  @property
  def batch_norm_trainable(self) -> bool:
    """Whether the backbone's batch norms train (False: frozen)."""
    return self._batch_norm_trainable

  @property
  def conv_hyperparams(self) -> hyperparams_lib.ConvHyperparams:
    """The extractor's ConvHyperparams."""
    return self._conv_hyperparams

  @property
  def proposal_feature_channels(self) -> int:
    """C1, depth of `extract_proposal_features`' output."""
    return self._proposal_feature_channels

  @property
  def box_classifier_feature_channels(self) -> int:
    """C2, depth of `extract_box_classifier_features`' output."""
    return self._box_classifier_feature_channels

  @property
  def default_initial_crop_size(self) -> int:
    """Side of the per-proposal crop_and_resize (14; 17 for Inception)."""
    return 14

  @property
  def keras_model(self) -> keras.Model:
    """The whole (edited) keras.applications network: image -> last layer.

    Its layers are the stages' layers; use it to load / save backbone
    weights (layer names are keras.applications'). VGG16: the conv layers
    only (image -> conv5_3); fc6 / fc7 live in the second-stage model.
    """
    return self._keras_model

  @property
  def proposal_feature_extractor_model(self) -> keras.Model:
    """First stage as a Keras model [B, H, W, 3] -> [B, H1, W1, C1]."""
    return self._first_stage

  @property
  def box_classifier_feature_extractor_model(self) -> keras.Model:
    """Second stage as a Keras model [M, h, w, C1] -> [M, h2, w2, C2]."""
    return self._second_stage

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Maps float32 RGB [B, H, W, 3] in [0, 255] to the backbone's input.

    Each subclass uses its keras.applications `preprocess_input`.

    Returns:
      float32 [B, H, W, 3].
    """
    raise NotImplementedError

  def extract_proposal_features(self, preprocessed_inputs: tf.Tensor,
                                training: bool = False) -> tf.Tensor:
    """First stage: the map that feeds the RPN and is cropped per proposal.

    Args:
      preprocessed_inputs: float32 [B, H, W, 3], output of `preprocess`.
      training: Python bool (frozen batch norms ignore it).

    Returns:
      float32 [B, ceil(H / s), ceil(W / s), proposal_feature_channels],
      s = first_stage_features_stride (Inception with
      align_feature_maps=False: keras' 'valid' sizes, see module docstring).

    Raises:
      ValueError: input not rank 4 with 3 channels.
    """
    inputs = _check_images(preprocessed_inputs, 'preprocessed_inputs', 3)
    return self._first_stage(inputs, training=training)

  def extract_box_classifier_features(self, proposal_feature_maps: tf.Tensor,
                                      training: bool = False) -> tf.Tensor:
    """Second stage, applied to each cropped (and max-pooled) proposal.

    Args:
      proposal_feature_maps: float32 [M, h, w, proposal_feature_channels]
        crops of the first-stage map (M may be 0), e.g. 7x7 (14x14 then 2x2
        max-pool) or 17x17 for Inception.
      training: Python bool (frozen batch norms ignore it).

    Returns:
      float32 [M, h2, w2, box_classifier_feature_channels]; the sizes per
      extractor are in the module docstring (ResNet 7 -> 4, Inception
      17 -> 8, VGG16 -> 1).

    Raises:
      ValueError: input not rank 4 with proposal_feature_channels channels.
    """
    crops = _check_images(proposal_feature_maps, 'proposal_feature_maps',
                          self._proposal_feature_channels)
    return self._run_second_stage(crops, training)

  def _run_second_stage(self, crops: tf.Tensor, training) -> tf.Tensor:
    """Second stage with a guard for M = 0.

    With oneDNN (TF 2.20's CPU default) `Conv2D` of an empty batch returns a
    tensor of the INPUT's shape ([0, 7, 7, 32] -> [0, 7, 7, 32] for a
    32 -> 192 conv), breaking the next layer; for M = 0 the stage runs on
    one zero crop (inference mode) and the result is sliced to 0 rows.
    """

    def nonempty():
      return self._second_stage(crops, training=training)

    def empty():
      one = tf.zeros(tf.concat([[1], tf.shape(crops)[1:]], axis=0),
                     crops.dtype)
      return self._second_stage(one, training=False)[:0]

    if crops.shape[0] is not None:  # static batch: no cond needed.
      return nonempty() if crops.shape[0] > 0 else empty()
    return tf.cond(tf.shape(crops)[0] > 0, nonempty, empty)

  def restore_backbone_weights(self) -> bool:
    """Loads `weights` into `keras_model` when it names a file.

    Accepts a Keras weights file (`.weights.h5`, e.g. written by
    `extractor.keras_model.save_weights`) or a TF checkpoint prefix written
    as `tf.train.Checkpoint(model=extractor.keras_model)`.

    Returns:
      True when weights were loaded, False for None / 'imagenet' (handled at
      construction).

    Raises:
      ValueError: no such file / checkpoint (the message names the path).
    """
    path = self.backbone_weights
    if path in _KERAS_WEIGHTS:
      return False
    if path.endswith('.h5'):
      if not tf.io.gfile.exists(path):
        raise ValueError(f'feature_extractor.weights: no file {path}')
      self._keras_model.load_weights(path)
      return True
    if not tf.io.gfile.exists(path + '.index'):
      raise ValueError(f'feature_extractor.weights: {path} is neither a .h5 '
                       'weights file nor a TF checkpoint prefix')
    status = tf.train.Checkpoint(model=self._keras_model).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    return True


def _keras_weights(weights):
  return ssd_feature_extractor.keras_application_weights(weights)


# ----------------------------------------------------------------------------
# ResNet
# ----------------------------------------------------------------------------

_BLOCK1_STRIDED = re.compile(r'conv([45])_block1_[01]_conv')
_CONV_3X3 = re.compile(r'conv([45])_block\d+_2_conv')


def _resnet_edit(first_stage_features_stride: int, conv5_stride: int
                 ) -> EditFn:
  """Atrous edits of keras' ResNet v1 (slim `output_stride` semantics).

  Stage k (conv4 / conv5) loses its stride-2 (conv_k_block1's 1x1 main and
  shortcut convs get stride 1) when asked, and every 3x3 conv of that stage
  and the later ones is dilated by the product of the strides removed so
  far: stride 8 -> conv4 dilation 2 (conv5 dilation 4 if it is stride 1
  too); conv5_stride=1 alone -> conv5 dilation 2 (R-FCN's a trous conv5).
  """
  removed = {'4': first_stage_features_stride == 8, '5': conv5_stride == 1}
  rate = {'4': 2 if removed['4'] else 1}
  rate['5'] = rate['4'] * (2 if removed['5'] else 1)

  def edit(layer, config, in_first_stage):
    del in_first_stage
    match = _BLOCK1_STRIDED.fullmatch(layer.name)
    if match and removed[match.group(1)]:
      config['strides'] = (1, 1)
    match = _CONV_3X3.fullmatch(layer.name)
    if match and rate[match.group(1)] > 1:
      r = rate[match.group(1)]
      config['dilation_rate'] = (r, r)
    return None

  return edit


class _FasterRCNNResNetKerasFeatureExtractor(FasterRCNNFeatureExtractor):
  """Faster R-CNN ResNet v1 (keras.applications ResNet50 / ResNet101).

  First stage up to the conv4 output (stride 16, or 8 atrous), 1024
  channels; second stage conv5 (3 blocks, conv5_block1 stride 2), 2048
  channels: 7x7 crops -> [M, 4, 4, 2048]. Preprocessing: caffe style
  (RGB -> BGR, minus the ImageNet means [103.939, 116.779, 123.68]).

  Args (keyword-only), beyond `FasterRCNNFeatureExtractor`'s
  (first_stage_features_stride may be 8 or 16):
    conv5_stride: 2 (default; keras.applications and the TF OD API Keras
      extractor: 7x7 crops -> 4x4) or 1 (conv5_block1 without stride and
      conv5's 3x3 convs dilated, as R-FCN's a trous conv5, Dai et al. 2016
      section 2, and the TF OD API slim extractor's stride-1 block4:
      7x7 crops -> 7x7, a whole stride-16 map stays at stride 16).

  Raises:
    ValueError: conv5_stride not 1 or 2, and the base-class errors.
  """

  _SUPPORTED_STRIDES = (8, 16)
  _CONSTRUCTOR = None
  _PROPOSAL_LAYER = None

  def __init__(self, *, first_stage_features_stride: int = 16,
               conv5_stride: int = 2, batch_norm_trainable: bool = False,
               weights=None, conv_hyperparams=None,
               name: Optional[str] = None):
    super().__init__(first_stage_features_stride=first_stage_features_stride,
                     batch_norm_trainable=batch_norm_trainable,
                     weights=weights, conv_hyperparams=conv_hyperparams,
                     name=name)
    if conv5_stride not in (1, 2):
      raise ValueError(f'conv5_stride must be 1 or 2, got {conv5_stride!r}')
    self._conv5_stride = int(conv5_stride)
    base = type(self)._CONSTRUCTOR(  # pylint: disable=not-callable
        include_top=False, weights=_keras_weights(self.backbone_weights),
        input_shape=(None, None, 3))
    self._build_stages(base, proposal_layer=self._PROPOSAL_LAYER,
                       classifier_layer='conv5_block3_out',
                       edit=_resnet_edit(first_stage_features_stride,
                                         self._conv5_stride))

  @property
  def conv5_stride(self) -> int:
    """Stride of the second stage (conv5_block1): 2 or 1."""
    return self._conv5_stride

  def preprocess(self, images):
    """Caffe-style ResNet preprocessing (keras resnet.preprocess_input)."""
    images = _to_float32(images)
    return tf.keras.applications.resnet.preprocess_input(images)


class FasterRCNNResNet50KerasFeatureExtractor(
    _FasterRCNNResNetKerasFeatureExtractor):
  """Faster R-CNN ResNet-50: split after conv4_block6_out (He et al. 2016)."""

  _CONSTRUCTOR = staticmethod(tf.keras.applications.ResNet50)
  _PROPOSAL_LAYER = 'conv4_block6_out'
  _DEFAULT_NAME = 'faster_rcnn_resnet50_feature_extractor'


class FasterRCNNResNet101KerasFeatureExtractor(
    _FasterRCNNResNetKerasFeatureExtractor):
  """Faster R-CNN ResNet-101: split after conv4_block23_out."""

  _CONSTRUCTOR = staticmethod(tf.keras.applications.ResNet101)
  _PROPOSAL_LAYER = 'conv4_block23_out'
  _DEFAULT_NAME = 'faster_rcnn_resnet101_feature_extractor'


# ----------------------------------------------------------------------------
# MobileNetV2
# ----------------------------------------------------------------------------


_MOBILENET_DEPTHWISE = re.compile(r'block_(\d+)_depthwise')


def _same_padding_edit(layer, config, in_first_stage):
  """'valid' strided convs / pools -> 'same'; correct_pad paddings -> identity.

  keras.applications pads stride-2 depthwise convs with ZeroPadding2D
  ((0, 1), (0, 1)) when the static size is unknown, then convolves 'valid';
  'same' does exactly that for even sizes and pads (1, 1) for odd ones, so
  every map is ceil(H / 2). 'valid' max-pools (VGG) become 'same' too.
  """
  del in_first_stage
  if isinstance(layer, keras.layers.ZeroPadding2D):
    return keras.layers.Identity(name=layer.name)
  strides = tuple(config.get('strides') or (1, 1))
  if config.get('padding') == 'valid' and strides != (1, 1):
    config['padding'] = 'same'
  return None


class FasterRCNNMobileNetV2KerasFeatureExtractor(FasterRCNNFeatureExtractor):
  """Faster R-CNN on keras.applications MobileNetV2 (Sandler et al. 2018).

  First stage up to `block_12_add` (stride 16, make_divisible(96 * alpha,
  8) channels); second stage block_13 (stride 2) .. out_relu (1280 channels
  for alpha <= 1): 7x7 crops -> [M, 4, 4, 1280]. Stride-2 convs use 'same'
  padding (see `_same_padding_edit`). Preprocessing: x / 127.5 - 1.

  Args (keyword-only), beyond `FasterRCNNFeatureExtractor`'s (stride 16
  only):
    depth_multiplier: MobileNetV2 alpha (> 0); ImageNet weights exist for
      0.35, 0.5, 0.75, 1.0, 1.3, 1.4.
    min_depth: int >= 1; every conv narrower than it is widened to it (TF
      OD API meaning). keras.applications already rounds widths up to
      multiples of 8, so the default 8 changes nothing; a larger value with
      weights='imagenet' raises ValueError when it changes a layer.

    second_stage_stride: 2 (default: block_13 halves the map) or 1:
      block_13's depthwise conv keeps stride 1 and the later depthwise convs
      are dilated by 2, so the second stage run on a whole map stays at
      stride 16 (R-FCN's a trous conv5, Dai et al. 2016 Sec. 2.3, applied
      to MobileNetV2).

  Raises:
    ValueError: depth_multiplier <= 0, min_depth < 1, stride != 16,
      second_stage_stride not 1 or 2, and the base-class errors.
  """

  _DEFAULT_NAME = 'faster_rcnn_mobilenet_v2_feature_extractor'

  def __init__(self, *, depth_multiplier: float = 1.0, min_depth: int = 8,
               first_stage_features_stride: int = 16,
               second_stage_stride: int = 2,
               batch_norm_trainable: bool = False, weights=None,
               conv_hyperparams=None, name: Optional[str] = None):
    if second_stage_stride not in (1, 2):
      raise ValueError('second_stage_stride must be 1 or 2, got '
                       f'{second_stage_stride!r}')
    super().__init__(first_stage_features_stride=first_stage_features_stride,
                     batch_norm_trainable=batch_norm_trainable,
                     weights=weights, conv_hyperparams=conv_hyperparams,
                     name=name)
    if not depth_multiplier > 0:
      raise ValueError(f'depth_multiplier must be > 0, got {depth_multiplier}')
    if int(min_depth) < 1:
      raise ValueError(f'min_depth must be >= 1, got {min_depth}')
    self._depth_multiplier = float(depth_multiplier)
    self._min_depth = int(min_depth)
    self._second_stage_stride = int(second_stage_stride)
    base = tf.keras.applications.MobileNetV2(
        input_shape=(None, None, 3), alpha=depth_multiplier,
        include_top=False, weights=_keras_weights(self.backbone_weights))

    atrous = self._second_stage_stride == 1

    def edit(layer, config, in_first_stage):
      if (isinstance(layer, keras.layers.Conv2D) and
          not isinstance(layer, keras.layers.DepthwiseConv2D) and
          config['filters'] < self._min_depth):
        config['filters'] = self._min_depth
      match = _MOBILENET_DEPTHWISE.fullmatch(layer.name)
      if atrous and match and int(match.group(1)) >= 13:
        if int(match.group(1)) == 13:
          config['strides'] = (1, 1)
          config['padding'] = 'same'
        else:
          config['dilation_rate'] = (2, 2)
      return _same_padding_edit(layer, config, in_first_stage)

    self._build_stages(base, proposal_layer='block_12_add',
                       classifier_layer='out_relu', edit=edit)

  @property
  def depth_multiplier(self) -> float:
    """MobileNetV2 alpha."""
    return self._depth_multiplier

  @property
  def second_stage_stride(self) -> int:
    """1 (atrous second stage) or 2."""
    return self._second_stage_stride

  def preprocess(self, images):
    """Maps RGB [0, 255] to [-1, 1]: x / 127.5 - 1."""
    images = _to_float32(images)
    return images / 127.5 - 1.0


# ----------------------------------------------------------------------------
# VGG16
# ----------------------------------------------------------------------------


def copy_vgg16_imagenet_weights(source: keras.Model, backbone: keras.Model,
                                fc6: keras.layers.Dense,
                                fc7: keras.layers.Dense) -> None:
  """Copies a keras VGG16 with top into our conv backbone and fc6 / fc7.

  Args:
    source: `keras.applications.VGG16(include_top=True)` (224x224 input).
    backbone: our conv model (layers named block1_conv1 .. block5_conv3).
    fc6, fc7: built Dense layers of widths 4096 on a flattened 7x7x512
      input (source's 'fc1' / 'fc2', same channels-last flatten order).

  Raises:
    ValueError: shapes differ.
  """
  for layer in backbone.layers:
    if layer.weights:
      layer.set_weights(source.get_layer(layer.name).get_weights())
  for ours, theirs in ((fc6, 'fc1'), (fc7, 'fc2')):
    weights = source.get_layer(theirs).get_weights()
    ours_shapes = [tuple(w.shape) for w in ours.weights]
    theirs_shapes = [w.shape for w in weights]
    if theirs_shapes != ours_shapes:
      raise ValueError(f'{ours.name} shapes {ours_shapes} differ from VGG16 '
                       f'{theirs} {theirs_shapes}')
    ours.set_weights(weights)


class FasterRCNNVGG16KerasFeatureExtractor(FasterRCNNFeatureExtractor):
  """Faster R-CNN VGG16 (Simonyan & Zisserman 2015; Ren et al. 2015).

  First stage up to conv5_3 (`block5_conv3`, stride 16, no pool5, 512
  channels; 'same' max-pools so sizes are ceil(H / 16)). Second stage as in
  Fast / Faster R-CNN: flatten the [M, p, p, 512] crop, fc6 and fc7
  (Dense + ReLU, `fc_depth` wide, optional dropout), output reshaped to
  [M, 1, 1, fc_depth]. VGG has no batch norm (batch_norm_trainable has no
  effect). Preprocessing: caffe style (BGR minus ImageNet means).

  Args (keyword-only), beyond `FasterRCNNFeatureExtractor`'s (stride 16
  only):
    fc_depth: width of fc6 / fc7 (default 4096 as VGG16).
    pooled_crop_size: side p of the crops given to the second stage
      (initial_crop_size 14 max-pooled by 2 = 7); fc6 is built for it.
    fc_dropout_rate: dropout after fc6 and fc7 in training (Fast R-CNN
      uses 0.5; default 0 leaves it to the box predictor).
    With weights='imagenet', fc_depth 4096 and pooled_crop_size 7, fc6 /
    fc7 take VGG16's ImageNet fc1 / fc2 (Keras downloads the with-top
    weights); otherwise they are initialized from `conv_hyperparams`, whose
    L2 regularizer they use.

  Raises:
    ValueError: fc_depth or pooled_crop_size < 1, fc_dropout_rate outside
      [0, 1), stride != 16, base-class errors; a crop of another size.
  """

  _DEFAULT_NAME = 'faster_rcnn_vgg16_feature_extractor'

  def __init__(self, *, fc_depth: int = 4096, pooled_crop_size: int = 7,
               fc_dropout_rate: float = 0.0,
               first_stage_features_stride: int = 16,
               batch_norm_trainable: bool = False, weights=None,
               conv_hyperparams=None, name: Optional[str] = None):
    super().__init__(first_stage_features_stride=first_stage_features_stride,
                     batch_norm_trainable=batch_norm_trainable,
                     weights=weights, conv_hyperparams=conv_hyperparams,
                     name=name)
    if int(fc_depth) < 1:
      raise ValueError(f'fc_depth must be >= 1, got {fc_depth}')
    if int(pooled_crop_size) < 1:
      raise ValueError(f'pooled_crop_size must be >= 1, got '
                       f'{pooled_crop_size}')
    if not 0.0 <= fc_dropout_rate < 1.0:
      raise ValueError(f'fc_dropout_rate must be in [0, 1), got '
                       f'{fc_dropout_rate}')
    self._fc_depth = int(fc_depth)
    self._pooled_crop_size = int(pooled_crop_size)
    imagenet_top = (self.backbone_weights == 'imagenet' and
                    self._fc_depth == 4096 and self._pooled_crop_size == 7)
    base = tf.keras.applications.VGG16(
        include_top=False, input_shape=(None, None, 3),
        weights=None if imagenet_top else _keras_weights(
            self.backbone_weights))
    self._build_stages(base, proposal_layer='block5_conv3',
                       classifier_layer=None, edit=_same_padding_edit)

    hp = self.conv_hyperparams
    p, c1 = self._pooled_crop_size, self._proposal_feature_channels
    crops = keras.Input((p, p, c1), name='vgg16_crops')
    fc6 = keras.layers.Dense(
        self._fc_depth, activation='relu', name='fc6',
        kernel_initializer=hp.kernel_initializer(),
        kernel_regularizer=hp.kernel_regularizer())
    fc7 = keras.layers.Dense(
        self._fc_depth, activation='relu', name='fc7',
        kernel_initializer=hp.kernel_initializer(),
        kernel_regularizer=hp.kernel_regularizer())
    x = keras.layers.Flatten(name='flatten')(crops)
    x = fc6(x)
    if fc_dropout_rate > 0:
      x = keras.layers.Dropout(fc_dropout_rate, name='fc6_dropout')(x)
    x = fc7(x)
    if fc_dropout_rate > 0:
      x = keras.layers.Dropout(fc_dropout_rate, name='fc7_dropout')(x)
    x = keras.layers.Reshape((1, 1, self._fc_depth), name='fc7_map')(x)
    self._second_stage = keras.Model(crops, x, name='vgg16_second_stage')
    self._box_classifier_feature_channels = self._fc_depth
    if imagenet_top:
      source = tf.keras.applications.VGG16(include_top=True,
                                           weights='imagenet')
      copy_vgg16_imagenet_weights(source, self._keras_model, fc6, fc7)

  @property
  def fc_depth(self) -> int:
    """Width of fc6 / fc7."""
    return self._fc_depth

  @property
  def pooled_crop_size(self) -> int:
    """Side of the crops the second stage accepts."""
    return self._pooled_crop_size

  def preprocess(self, images):
    """Caffe-style VGG preprocessing (keras vgg16.preprocess_input)."""
    images = _to_float32(images)
    return tf.keras.applications.vgg16.preprocess_input(images)

  def extract_box_classifier_features(self, proposal_feature_maps,
                                      training=False):
    """fc6 / fc7 on [M, p, p, 512] crops -> float32 [M, 1, 1, fc_depth].

    Raises:
      ValueError: static crop size other than pooled_crop_size (a dynamic
        mismatch fails in `tf.ensure_shape`), or bad rank / channels.
    """
    crops = _check_images(proposal_feature_maps, 'proposal_feature_maps',
                          self._proposal_feature_channels)
    p = self._pooled_crop_size
    for size in crops.shape[1:3]:
      if size is not None and size != p:
        raise ValueError(f'proposal_feature_maps must be [M, {p}, {p}, '
                         f'{self._proposal_feature_channels}] (fc6 is built '
                         f'for pooled_crop_size={p}), got {crops.shape}')
    crops = tf.ensure_shape(crops, [None, p, p,
                                    self._proposal_feature_channels])
    return self._run_second_stage(crops, training)


# ----------------------------------------------------------------------------
# Inception
# ----------------------------------------------------------------------------


def _inception_edit(align_feature_maps: bool) -> EditFn:
  """First-stage 'valid' paddings -> 'same' when aligning feature maps."""

  def edit(layer, config, in_first_stage):
    del layer
    if (align_feature_maps and in_first_stage and
        config.get('padding') == 'valid'):
      config['padding'] = 'same'
    return None

  return edit


class _FasterRCNNInceptionKerasFeatureExtractor(FasterRCNNFeatureExtractor):
  """Shared body of the Inception extractors (17x17 crops).

  Args (keyword-only), beyond `FasterRCNNFeatureExtractor`'s (stride 16
  only):
    align_feature_maps: True (default) makes the first stage 'same'-padded
      so its map is ceil(H / 16) x ceil(W / 16); False keeps keras' 'valid'
      paddings (smaller, odd maps; see the module docstring).
  """

  _CONSTRUCTOR = None
  _PROPOSAL_LAYER = None
  _CLASSIFIER_LAYER = None

  def __init__(self, *, align_feature_maps: bool = True,
               first_stage_features_stride: int = 16,
               batch_norm_trainable: bool = False, weights=None,
               conv_hyperparams=None, name: Optional[str] = None):
    super().__init__(first_stage_features_stride=first_stage_features_stride,
                     batch_norm_trainable=batch_norm_trainable,
                     weights=weights, conv_hyperparams=conv_hyperparams,
                     name=name)
    self._align_feature_maps = bool(align_feature_maps)
    base = type(self)._CONSTRUCTOR(  # pylint: disable=not-callable
        include_top=False, weights=_keras_weights(self.backbone_weights),
        input_shape=(None, None, 3))
    self._build_stages(base, proposal_layer=self._PROPOSAL_LAYER,
                       classifier_layer=self._CLASSIFIER_LAYER,
                       edit=_inception_edit(self._align_feature_maps),
                       check_stride=self._align_feature_maps)

  @property
  def align_feature_maps(self) -> bool:
    """Whether the first stage uses 'same' padding everywhere."""
    return self._align_feature_maps

  @property
  def default_initial_crop_size(self) -> int:
    """17: the stride-16 map of a 299 ImageNet image (paper, 3.6.1)."""
    return 17

  def preprocess(self, images):
    """Maps RGB [0, 255] to [-1, 1]: x / 127.5 - 1 (Inception training)."""
    images = _to_float32(images)
    return images / 127.5 - 1.0


class FasterRCNNInceptionV3KerasFeatureExtractor(
    _FasterRCNNInceptionKerasFeatureExtractor):
  """Faster R-CNN Inception V3 (Szegedy et al. 2016).

  First stage up to `mixed7` (slim Mixed_6e, 768 channels, stride 16);
  second stage mixed8 (Mixed_7a, 'valid' stride 2) .. mixed10 (2048
  channels): 17x17 crops -> [M, 8, 8, 2048].
  """

  _CONSTRUCTOR = staticmethod(tf.keras.applications.InceptionV3)
  _PROPOSAL_LAYER = 'mixed7'
  _CLASSIFIER_LAYER = 'mixed10'
  _DEFAULT_NAME = 'faster_rcnn_inception_v3_feature_extractor'


class FasterRCNNInceptionResNetV2KerasFeatureExtractor(
    _FasterRCNNInceptionKerasFeatureExtractor):
  """Faster R-CNN Inception-ResNet-v2 (Szegedy et al. 2017).

  First stage up to `block17_20_ac` (Mixed_6a and its 20 residual block17
  units, 1088 channels, stride 16; TF OD API's split); second stage
  mixed_7a ('valid' stride 2), the block8 units and conv_7b_ac (1536
  channels): 17x17 crops -> [M, 8, 8, 1536].
  """

  _CONSTRUCTOR = staticmethod(tf.keras.applications.InceptionResNetV2)
  _PROPOSAL_LAYER = 'block17_20_ac'
  _CLASSIFIER_LAYER = 'conv_7b_ac'
  _DEFAULT_NAME = 'faster_rcnn_inception_resnet_v2_feature_extractor'


# Config type string -> extractor class (keyword-only constructors).
FEATURE_EXTRACTORS = {
    'faster_rcnn_resnet50_keras': FasterRCNNResNet50KerasFeatureExtractor,
    'faster_rcnn_resnet101_keras': FasterRCNNResNet101KerasFeatureExtractor,
    'faster_rcnn_mobilenet_v2_keras':
        FasterRCNNMobileNetV2KerasFeatureExtractor,
    'faster_rcnn_vgg16_keras': FasterRCNNVGG16KerasFeatureExtractor,
    'faster_rcnn_inception_v3_keras':
        FasterRCNNInceptionV3KerasFeatureExtractor,
    'faster_rcnn_inception_resnet_v2_keras':
        FasterRCNNInceptionResNetV2KerasFeatureExtractor,
}
