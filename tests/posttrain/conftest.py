"""A tiny random Llama-3 checkpoint (with the SmolLM2 tokenizer) for the post-training tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
from tiny_models import write_tiny, write_tokenizer_files  # noqa: E402


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, smollm):
    """The directory of the tiny checkpoint (fresh processes load it by path)."""
    path = str(tmp_path_factory.mktemp("tiny-policy"))
    write_tiny(path, "llama3", seed=0)
    write_tokenizer_files(path, smollm.tokenizer)
    return path


@pytest.fixture(scope="session")
def tiny_policy(tiny_policy_dir):
    from introspect import models

    return models.load(tiny_policy_dir)
