"""Fixtures of the heads tests.

`tiny_head_lm` (used by test_zip_rc.py): a tiny random decoder over 64 ids (0 = pad, 1 = BOS,
2 = the stop token, 3..63 plain tokens), built in memory.
"""

import pytest


@pytest.fixture(scope="session")
def tiny_head_lm():
    import tokenizers
    from heads_word_lm import random_params
    from tokenizers import decoders, pre_tokenizers
    from tokenizers import models as tok_models

    from introspect.models import LM, ModelConfig, Tokenizer

    vocab = ["<pad>", "<s>", "</s>"] + [f"t{i}" for i in range(3, 64)]
    backend = tokenizers.Tokenizer(
        tok_models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<pad>")
    )
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(["<pad>", "<s>", "</s>"])
    tok = Tokenizer(backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    cfg = ModelConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        max_position_embeddings=64,
    )
    return LM(cfg, random_params(cfg, 0), tok, name="tiny-head-lm")
