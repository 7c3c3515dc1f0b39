"""Builds a `RegionSimilarityCalculator` (protos/region_similarity_calculator.proto)."""

from od_meta.builders import builder_utils
from od_meta.core import region_similarity_calculator as sim
from od_meta.protos import region_similarity_calculator_pb2

_BUILDERS = {
    'iou_similarity': lambda c: sim.IouSimilarity(),
    'ioa_similarity': lambda c: sim.IoaSimilarity(),
    'neg_sq_dist_similarity': lambda c: sim.NegSqDistSimilarity(),
    'giou_similarity': lambda c: sim.GIouSimilarity(),
}


def build(region_similarity_calculator_config):
  """Returns the calculator named by the `region_similarity` oneof.

  Raises:
    TypeError: on a message of the wrong type.
    ValueError: if none is set.
  """
  builder_utils.check_message_type(
      region_similarity_calculator_config,
      region_similarity_calculator_pb2.RegionSimilarityCalculator,
      'region_similarity_calculator_builder')
  return builder_utils.dispatch(region_similarity_calculator_config,
                                'region_similarity', _BUILDERS)
