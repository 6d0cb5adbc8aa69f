"""TFDS builders (TF-less: array_record files read with `tfds.data_source`), one shared layout.

Importing this package registers the builders with TFDS:

  introspect_synthetic/{easy,medium,hard}   synthetic verifiable suite, train/calibration/test
  introspect_gsm8k                          train/test, answer_type "number"
  introspect_math500                        test, answer_type "math"
  introspect_trivia_qa                      train/validation, answer_type "text"
  introspect_hotpot_qa                      train/validation (distractor context), "text"
  introspect_commonsense_qa                 train/validation, answer_type "choice"

The real sets download their public files on first use (a machine with internet); the synthetic
suite is generated locally. Every example has the fields of `common.FEATURE_KEYS`.
"""

from introspect.data.builders.common import (
    ANSWER_TYPES,
    FEATURE_KEYS,
    ArrayRecordBuilder,
    decode_record,
    iter_json_array,
    iter_jsonl,
    make_example,
    qa_features,
)
from introspect.data.builders.commonsense_qa import IntrospectCommonsenseQa, parse_commonsense_qa
from introspect.data.builders.gsm8k import IntrospectGsm8k, parse_gsm8k
from introspect.data.builders.hotpot_qa import IntrospectHotpotQa, parse_hotpot_qa
from introspect.data.builders.math500 import IntrospectMath500, parse_math
from introspect.data.builders.synthetic import (
    LEVELS,
    SYNTHETIC_TASKS,
    IntrospectSynthetic,
    SyntheticConfig,
    synthetic_split,
    synthetic_suite,
)
from introspect.data.builders.trivia_qa import IntrospectTriviaQa, parse_trivia_qa

__all__ = [
    "ANSWER_TYPES",
    "ArrayRecordBuilder",
    "FEATURE_KEYS",
    "LEVELS",
    "SYNTHETIC_TASKS",
    "IntrospectCommonsenseQa",
    "IntrospectGsm8k",
    "IntrospectHotpotQa",
    "IntrospectMath500",
    "IntrospectSynthetic",
    "IntrospectTriviaQa",
    "SyntheticConfig",
    "decode_record",
    "iter_json_array",
    "iter_jsonl",
    "make_example",
    "parse_commonsense_qa",
    "parse_gsm8k",
    "parse_hotpot_qa",
    "parse_math",
    "parse_trivia_qa",
    "qa_features",
    "synthetic_split",
    "synthetic_suite",
]
