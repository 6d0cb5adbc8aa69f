"""The feature layout every introspect builder shares, and streaming readers for raw files.

Every example of every builder (synthetic or real) has the same fields, so a task runner, a prompt
format or a grader never special-cases a dataset:

  id           unique within the dataset.
  task         the task family: "arithmetic", "gsm8k", "math500/algebra", "hotpotqa/bridge", ...
  level        difficulty where the source gives one ("easy", "3", "hard"), else "".
  question     the question text.
  context      passage(s) to read the answer from (HotpotQA), else "".
  choices      answer options for multiple choice (CommonsenseQA), else []; option i has letter
               "ABCDE..."[i].
  answer       the gold answer: a number as text ("number"), a LaTeX expression ("math"), a letter
               ("choice") or a short string ("text").
  aliases      further accepted answers for "text" (TriviaQA aliases), else [].
  answer_type  one of ANSWER_TYPES; picks the grader (see introspect.data.tasks.grader_for).
  solution     a worked solution where the source has one (GSM8K, MATH), else "".
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

ANSWER_TYPES = ("number", "math", "choice", "text")

FEATURE_KEYS = (
    "id",
    "task",
    "level",
    "question",
    "context",
    "choices",
    "answer",
    "aliases",
    "answer_type",
    "solution",
)

# The last paragraph of every real set's TFDS description (introspect.data.tasks does the carve).
CARVE_NOTE = (
    'introspect.data.load_task also offers "calibration" and "evaluation" splits, a seeded 50/50 '
    "carve of the shipped split by sha256 of the example id."
)

_SEQUENCE_KEYS = ("choices", "aliases")
_DELIMITERS = frozenset(" \t\r\n,]}:")


def qa_features() -> tfds.features.FeaturesDict:
    """The shared TFDS feature layout (all text; `choices`, `aliases` are lists of text)."""
    return tfds.features.FeaturesDict(
        {
            k: tfds.features.Sequence(tfds.features.Text())
            if k in _SEQUENCE_KEYS
            else tfds.features.Text()
            for k in FEATURE_KEYS
        }
    )


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A GeneratorBasedBuilder that writes array_record files unless told otherwise, so that
    `tfds.builder(name, data_dir=...).download_and_prepare()` and `tfds.data_source(name,
    data_dir=...)` work without TensorFlow (TFDS's default, tfrecord, needs it to write)."""

    def __init__(self, *, file_format: str | None = None, **kwargs: Any):
        super().__init__(file_format=file_format or "array_record", **kwargs)


class RemoteQABuilder(ArrayRecordBuilder, skip_registration=True):
    """A published QA set converted to the shared layout. Subclasses set HOMEPAGE and URLS
    ({split: url}) and implement `_examples(path, split)` (the parsed examples of one downloaded
    file); sources other than one file per split override `_split_sources`. The TFDS
    description ends with CARVE_NOTE (the calibration/evaluation carve of `load_task`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    HOMEPAGE = ""
    URLS: dict[str, str] = {}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=f"{self._description().rstrip()}\n\n{CARVE_NOTE}",
            features=qa_features(),
            homepage=self.HOMEPAGE,
        )

    def _description(self) -> str:
        """The dataset's description: the first paragraph of the builder module's docstring."""
        doc = sys.modules[type(self).__module__].__doc__ or ""
        return doc.split("\n\n")[0]

    def _split_sources(self, dl_manager) -> dict[str, Any]:
        return dl_manager.download(self.URLS)

    def _split_generators(self, dl_manager):
        sources = self._split_sources(dl_manager)
        return {split: self._generate_examples(path, split) for split, path in sources.items()}

    def _generate_examples(self, path, split):
        for ex in self._examples(path, split):
            yield ex["id"], ex

    def _examples(self, path, split) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


def make_example(
    *,
    id: str,
    task: str,
    question: str,
    answer: str,
    answer_type: str,
    level: str = "",
    context: str = "",
    choices: tuple[str, ...] | list[str] = (),
    aliases: tuple[str, ...] | list[str] = (),
    solution: str = "",
) -> dict[str, Any]:
    """One example in the shared layout, checked (answer type known, choice answers are letters)."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
    if answer_type == "choice":
        letters = "ABCDEFGHIJ"[: len(choices)]
        if not choices or answer not in letters:
            raise ValueError(f"choice answer {answer!r} is not a letter of {len(choices)} choices")
    return {
        "id": str(id),
        "task": str(task),
        "level": str(level),
        "question": str(question),
        "context": str(context),
        "choices": [str(c) for c in choices],
        "answer": str(answer),
        "aliases": [str(a) for a in aliases],
        "answer_type": answer_type,
        "solution": str(solution),
    }


def decode_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record read back through `tfds.data_source` (bytes, arrays of bytes) -> plain Python."""

    def text(x: Any) -> str:
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)

    out = {}
    for k, v in record.items():
        if isinstance(v, (bytes, str)):
            out[k] = text(v)
        elif hasattr(v, "__iter__"):
            out[k] = [text(x) for x in v]
        else:
            out[k] = v
    return out


def iter_jsonl(path: epath.PathLike) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file (blank lines skipped; "*.gz" is gunzipped)."""
    path = epath.Path(path)
    with path.open("rb") as raw:
        f = gzip.open(raw, "rt", encoding="utf-8") if path.name.endswith(".gz") else raw
        for line in f:
            if line.strip():
                yield json.loads(line)


def iter_json_array(
    path: epath.PathLike, *, key: str | None = None, chunk_chars: int = 1 << 20
) -> Iterator[Any]:
    """Streams the elements of a JSON array without loading the whole file.

    The raw files of TriviaQA and HotpotQA are single JSON documents of up to a few GB; `json.load`
    would need several times that in memory. Elements are decoded one at a time with
    `json.JSONDecoder.raw_decode`, reading `chunk_chars` characters more whenever an element is
    not complete yet.

    Args:
      path: the JSON file.
      key: None when the file is an array (HotpotQA); else the array is the value of this
        top-level key of an object (TriviaQA: "Data"). Other top-level values are skipped.
      chunk_chars: read size.
    Yields:
      the array's elements, in order.
    Raises:
      ValueError: the file is not of that shape.
    """
    decoder = json.JSONDecoder()
    with epath.Path(path).open("r") as f:
        buf, pos, eof = "", 0, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            more = f.read(chunk_chars)
            if not more:
                eof = True
                return False
            buf, pos = buf[pos:] + more, 0
            return True

        def peek() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos].isspace():
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not fill():
                    return ""

        def expect(ch: str) -> None:
            nonlocal pos
            got = peek()
            if got != ch:
                raise ValueError(f"{path}: expected {ch!r} at character {pos}, found {got!r}")
            pos += 1

        def value() -> Any:
            nonlocal pos
            peek()
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if fill():
                        continue
                    raise ValueError(f"{path}: invalid JSON: {e}") from e
                # A value must be followed by a delimiter; a number cut by the chunk boundary
                # ("1" of "1.5") is not, so read on and decode it again.
                if (end == len(buf) or buf[end] not in _DELIMITERS) and not eof and fill():
                    continue
                pos = end
                return obj

        def array() -> Iterator[Any]:
            nonlocal pos
            expect("[")
            if peek() == "]":
                pos += 1
                return
            while True:
                yield value()
                sep = peek()
                pos += 1
                if sep == "]":
                    return
                if sep != ",":
                    raise ValueError(f"{path}: expected ',' or ']' in array, found {sep!r}")

        if key is None:
            yield from array()
            return
        expect("{")
        while True:
            if peek() == "}":
                raise ValueError(f"{path}: top-level key {key!r} not found")
            name = value()
            expect(":")
            if name == key:
                yield from array()
                return
            value()
            if peek() == ",":
                pos += 1
