"""Builds a `Matcher` from a `Matcher` config (protos/matcher.proto)."""

from od_meta.builders import builder_utils
from od_meta.matchers import argmax_matcher
from od_meta.matchers import bipartite_matcher
from od_meta.protos import matcher_pb2


def _argmax(config):
  matched = None if config.ignore_thresholds else config.matched_threshold
  unmatched = None if config.ignore_thresholds else config.unmatched_threshold
  return argmax_matcher.ArgMaxMatcher(
      matched_threshold=matched,
      unmatched_threshold=unmatched,
      negatives_lower_than_unmatched=config.negatives_lower_than_unmatched,
      force_match_for_each_row=config.force_match_for_each_row,
      use_matmul_gather=config.use_matmul_gather)


_BUILDERS = {
    'argmax_matcher': _argmax,
    'bipartite_matcher': lambda c: bipartite_matcher.GreedyBipartiteMatcher(
        use_matmul_gather=c.use_matmul_gather),
}


def build(matcher_config):
  """Returns the matcher named by `matcher_oneof`.

  Raises:
    TypeError: if the argument is not a `Matcher` message.
    ValueError: if no matcher is set, or the thresholds are inconsistent
      (raised by `ArgMaxMatcher`).
  """
  builder_utils.check_message_type(matcher_config, matcher_pb2.Matcher,
                                   'matcher_builder')
  return builder_utils.dispatch(matcher_config, 'matcher_oneof', _BUILDERS)
