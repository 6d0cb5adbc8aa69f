"""Fixtures over tiny random checkpoints (helpers live in tiny_models.py)."""

import pytest
from tiny_models import TINY_VARIANTS, write_tiny, write_tokenizer_files


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory, smollm):
    """{variant: (directory, transformers model)} for every TINY_VARIANTS entry."""
    out = {}
    for i, variant in enumerate(TINY_VARIANTS):
        path = str(tmp_path_factory.mktemp(f"tiny-{variant}"))
        model = write_tiny(path, variant, seed=i)
        write_tokenizer_files(path, smollm.tokenizer)
        out[variant] = (path, model)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_dirs):
    """introspect's handle on the tiny Llama-3 checkpoint."""
    from introspect import models

    return models.load(tiny_dirs["llama3"][0])
