"""The sentence encoder (introspect.models.encoder) against transformers' BertModel on a tiny random
BERT wrapped in a hand-written sentence-transformers directory."""

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers

from introspect.models import encoder as enc_mod
from introspect.models.encoder import load_encoder
from introspect.models.loaders import WeightsMismatchError

CORPUS = [
    "The capital of France is Paris.",
    "Paris is the capital city of France.",
    "London is the capital of the United Kingdom.",
    "The answer is 42.",
    "I think the answer is forty two.",
    "Cats sit on mats; dogs run in parks.",
    "Water boils at one hundred degrees Celsius at sea level.",
]
TEXTS = [
    "Paris.",
    "The capital of France is Paris, of course.",
    "London",
    "",
    "forty two is the answer, I think, and the cat sat on the mat in Paris.",
    "dogs run",
]
MAX_SEQ = 32


def _write_tokenizer(path):
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.save(os.path.join(path, "tokenizer.json"))
    return tok.get_vocab_size()


def _write_st_files(path, *, pooling=None, normalize=True):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        os.makedirs(os.path.join(path, "2_Normalize"), exist_ok=True)
    with open(os.path.join(path, "modules.json"), "w") as f:
        json.dump(modules, f)
    os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
    flags = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    if pooling is not None:
        for mode, key in enc_mod._POOLING_KEYS.items():
            flags[key] = mode in pooling
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump(flags, f)
    with open(os.path.join(path, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": MAX_SEQ, "do_lower_case": False}, f)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory):
    """(directory, BertModel) of a tiny random BERT sentence-transformers model."""
    path = tmp_path_factory.mktemp("tiny-st-bert")
    vocab = _write_tokenizer(str(path))
    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    with torch.no_grad():  # O(1) random weights (LayerNorms too), so every tensor matters
        for name, p in model.named_parameters():
            p.normal_(1.0 if name.endswith("LayerNorm.weight") else 0.0, 0.3)
    model.save_pretrained(str(path), safe_serialization=True)
    _write_st_files(str(path))
    return path, model


@pytest.fixture(scope="module")
def enc(st_dir):
    return load_encoder(st_dir[0])


def _batch(encoder, texts):
    encs = encoder.tokenize(texts)
    t = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), t), np.int64)
    types = np.zeros((len(encs), t), np.int64)
    mask = np.zeros((len(encs), t), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        types[i, : len(e.ids)] = e.type_ids
        mask[i, : len(e.ids)] = 1
    return ids, types, mask


def _torch_hidden(model, ids, types, mask):
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids),
            token_type_ids=torch.from_numpy(types),
            attention_mask=torch.from_numpy(mask),
        )
    return out.last_hidden_state.numpy()


def _copy(st_dir, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(st_dir[0], dst)
    return dst


def test_loads_the_directory(enc):
    assert enc.config.num_layers == 2 and enc.config.hidden_size == 32
    assert enc.pooling == ("mean",) and enc.normalize and enc.max_seq_length == MAX_SEQ
    assert enc.dim == 32
    assert "pooling=mean" in repr(enc)


def test_last_hidden_states_match_bert_model(st_dir, enc):
    ids, types, mask = _batch(enc, TEXTS)
    forward = jax.jit(enc_mod.apply, static_argnames="config")
    ours = np.asarray(forward(enc.params, ids, mask, types, config=enc.config))
    ref = _torch_hidden(st_dir[1], ids, types, mask)
    valid = mask.astype(bool)
    np.testing.assert_allclose(ours[valid], ref[valid], atol=1e-5, rtol=0)
    assert np.abs(ref[valid]).max() > 0.5  # not a trivially small signal


def test_embeddings_match_torch_mean_pool_and_normalise(st_dir, enc):
    ids, types, mask = _batch(enc, TEXTS)
    h = torch.from_numpy(_torch_hidden(st_dir[1], ids, types, mask))
    m = torch.from_numpy(mask).float()[..., None]
    ref = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    ref = torch.nn.functional.normalize(ref, p=2, dim=1).numpy()
    ours = enc.encode(TEXTS)
    assert ours.shape == (len(TEXTS), 32) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_batching_and_padding_invariance(enc):
    batched = enc.encode(TEXTS)
    one_by_one = np.concatenate([enc.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5, rtol=0)
    # 12 texts in batches of 8: two batches with different padded lengths, in sorted order
    two_batches = enc.encode(TEXTS + TEXTS[::-1], batch_size=8)
    np.testing.assert_allclose(two_batches, np.concatenate([batched, batched[::-1]]), atol=1e-5)


def test_similarity_matrix(enc):
    sim = enc.similarity(TEXTS)
    assert sim.shape == (len(TEXTS), len(TEXTS))
    np.testing.assert_array_equal(sim, sim.T)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    assert np.all(np.abs(sim) <= 1.0)
    emb = enc.encode(TEXTS)
    np.testing.assert_allclose(sim, emb @ emb.T, atol=1e-5)
    cross = enc.similarity(TEXTS[:2], TEXTS[2:])
    assert cross.shape == (2, len(TEXTS) - 2)
    np.testing.assert_allclose(cross, sim[:2, 2:], atol=1e-6)


def test_truncation_to_max_seq_length(enc):
    long = " ".join(CORPUS * 3)
    (e,) = enc.tokenize([long])
    assert len(e.ids) == MAX_SEQ and e.tokens[0] == "[CLS]" and e.tokens[-1] == "[SEP]"
    first = enc.tokenize([long[:200]])[0]
    emb = enc.encode([long, long[:200]])
    if len(first.ids) == MAX_SEQ and first.ids == e.ids:  # same truncated ids: same embedding
        np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)
    assert np.isfinite(emb).all()


def test_bucketed_shapes_do_not_recompile_per_batch(enc):
    enc.encode(TEXTS + TEXTS, batch_size=8)
    before = enc_mod._embed._cache_size()
    enc.encode([t + " again" for t in TEXTS] + TEXTS, batch_size=8)  # same buckets, new texts
    enc.encode(TEXTS[::-1][:5], batch_size=8)
    enc.encode(TEXTS[:1], batch_size=8)
    assert enc_mod._embed._cache_size() == before


def test_pool_modes_match_sentence_transformers_formulas(st_dir, enc):
    ids, types, mask = _batch(enc, TEXTS)
    h = _torch_hidden(st_dir[1], ids, types, mask)
    m = mask[..., None].astype(np.float32)
    w = m * np.arange(1, h.shape[1] + 1)[None, :, None]
    ref = {
        "cls": h[:, 0],
        "max": np.where(m > 0, h, -1e9).max(1),
        "mean": (h * m).sum(1) / m.sum(1),
        "mean_sqrt_len_tokens": (h * m).sum(1) / np.sqrt(m.sum(1)),
        "weightedmean": (h * w).sum(1) / w.sum(1),
        "lasttoken": h[np.arange(len(h)), mask.sum(1) - 1],
    }
    ours = np.asarray(enc_mod.pool(h, mask, enc_mod.POOLING_MODES))  # all six, concatenated
    for i, mode in enumerate(enc_mod.POOLING_MODES):
        np.testing.assert_allclose(
            ours[:, 32 * i : 32 * (i + 1)], ref[mode], atol=1e-5, rtol=0, err_msg=mode
        )


def test_concatenated_pooling_without_normalize(st_dir, tmp_path):
    path = _copy(st_dir, tmp_path)
    _write_st_files(str(path), pooling=("mean", "cls"), normalize=False)  # flags, not an order
    encoder = load_encoder(path)
    assert encoder.pooling == ("cls", "mean") and not encoder.normalize and encoder.dim == 64
    ids, types, mask = _batch(encoder, TEXTS)
    h = _torch_hidden(st_dir[1], ids, types, mask)
    m = mask[..., None]
    ref = np.concatenate([h[:, 0], (h * m).sum(1) / m.sum(1)], axis=1)
    np.testing.assert_allclose(encoder.encode(TEXTS), ref, atol=1e-5, rtol=0)
    # a single "pooling_mode" string overrides the flags
    cfg = json.loads((path / "1_Pooling" / "config.json").read_text())
    (path / "1_Pooling" / "config.json").write_text(json.dumps({**cfg, "pooling_mode": "max"}))
    assert load_encoder(path).pooling == ("max",)


def test_bert_prefix_and_refused_pytorch_bin(st_dir, enc, tmp_path):
    from safetensors.numpy import load_file, save_file

    path = _copy(st_dir, tmp_path, "prefixed")
    tensors = load_file(str(path / "model.safetensors"))
    tensors = {f"bert.{k}": v for k, v in tensors.items()}
    tensors["cls.predictions.bias"] = np.zeros(3, np.float32)  # a head outside the prefix
    save_file(tensors, str(path / "model.safetensors"))
    np.testing.assert_allclose(load_encoder(path).encode(TEXTS), enc.encode(TEXTS), atol=1e-6)

    path = _copy(st_dir, tmp_path, "bin")
    os.remove(path / "model.safetensors")
    torch.save(st_dir[1].state_dict(), path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pickled weights are not loaded"):
        load_encoder(path)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_text_errors(enc):
    with pytest.raises(ValueError, match="empty"):
        enc.encode([])
    with pytest.raises(ValueError, match="empty"):
        enc.similarity(["a"], [])
    with pytest.raises(TypeError, match="single str"):
        enc.encode("a sentence")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        enc.encode(["a", None])
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(["a"], batch_size=0)


def test_missing_directory_and_files(st_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder directory not found"):
        load_encoder(tmp_path / "nope")
    with pytest.raises(ValueError, match="floating"):
        load_encoder(st_dir[0], dtype="int8")
    cases = {
        "modules.json": "modules.json not found",
        "tokenizer.json": "tokenizer.json not found",
        "model.safetensors": "no model.safetensors",
        "config.json": "config.json not found",
        os.path.join("1_Pooling", "config.json"): re.escape(os.path.join("1_Pooling", "config"))
        + ".* not found",
    }
    for i, (name, message) in enumerate(cases.items()):
        path = _copy(st_dir, tmp_path, f"missing{i}")
        os.remove(path / name)
        with pytest.raises(FileNotFoundError, match=message) as info:
            load_encoder(path)
        assert "sentence-transformers directory" in str(info.value)


def test_unsupported_model_type_and_modules(st_dir, tmp_path):
    path = _copy(st_dir, tmp_path, "roberta")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(NotImplementedError, match="model_type 'roberta'"):
        load_encoder(path)

    path = _copy(st_dir, tmp_path, "dense")
    modules = json.loads((path / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules[-1]["idx"] = 3
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(NotImplementedError, match="Dense"):
        load_encoder(path)


def test_weights_that_do_not_fit(st_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    path = _copy(st_dir, tmp_path, "extra")
    tensors = load_file(str(path / "model.safetensors"))
    save_file(
        {**tensors, "encoder.layer.2.output.dense.weight": np.zeros((32, 64), np.float32)},
        str(path / "model.safetensors"),
    )
    with pytest.raises(WeightsMismatchError, match="not used"):
        load_encoder(path)

    path = _copy(st_dir, tmp_path, "short")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 48}))
    with pytest.raises(WeightsMismatchError, match="intermediate"):
        load_encoder(path)
