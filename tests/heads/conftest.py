"""Fixtures of the heads tests.

`tiny_head_lm` (used by test_zip_rc.py): a tiny random decoder over 64 ids (0 = pad, 1 = BOS,
2 = the stop token, 3..63 plain tokens), built in memory by `heads_word_lm.make_word_lm`.
"""

import pytest


@pytest.fixture(scope="session")
def tiny_head_lm():
    from heads_word_lm import make_word_lm

    words = ["<pad>", "<s>", "</s>"] + [f"t{i}" for i in range(3, 64)]
    specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    return make_word_lm(0, words=words, specials=specials, max_positions=64, name="tiny-head-lm")
