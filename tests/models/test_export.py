"""`models.save_hf`: LM -> Hugging Face directory, read back by `models.load` and transformers."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from tiny_models import TINY_VARIANTS, llamacpp_llama3_rope_factors, random_ids

from introspect import models
from introspect.models import export, loaders

FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
}
# float32 JAX vs float32 PyTorch through 30 layers (measured ~1.2e-4 at |logits| ~ 40).
LOGIT_ATOL = 5e-4


def _leaves(params):
    return {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(params)
    }


def _assert_same_params(got, want):
    got, want = _leaves(got), _leaves(want)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _assert_same_tokenizer(a, b):
    for attr in ("vocab_size", "chat_template", "eos_token_ids", "add_bos_token"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for name in ("bos", "eos", "pad", "unk"):
        assert getattr(a, f"{name}_token") == getattr(b, f"{name}_token"), name
        assert getattr(a, f"{name}_token_id") == getattr(b, f"{name}_token_id"), name


def _tensor_names(path):
    names = set()
    for f in os.listdir(path):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(path, f), framework="numpy") as h:
                names |= set(h.keys())
    return names


@pytest.fixture(scope="module")
def exported(smollm, tmp_path_factory):
    return models.save_hf(smollm, tmp_path_factory.mktemp("export") / "smollm2-hf")


@pytest.mark.slow
def test_embedded_model_round_trip(smollm, exported, chat_prompt_ids):
    assert set(os.listdir(exported)) == FILES
    assert not [f for f in os.listdir(os.path.dirname(exported)) if f.startswith(".")]  # no temp
    with open(os.path.join(exported, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert cfg["torch_dtype"] == "float32" and cfg["tie_word_embeddings"] is True
    assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (1, 2)
    names = _tensor_names(exported)
    assert "lm_head.weight" not in names and len(names) == 2 + 9 * smollm.config.num_layers

    lm = models.load(exported)
    assert lm.config == smollm.config
    _assert_same_params(lm.params, smollm.params)
    _assert_same_tokenizer(lm.tokenizer, smollm.tokenizer)
    text = "Hi  there\n\n12345 <|im_start|>é"
    assert lm.tokenizer.encode(text) == smollm.tokenizer.encode(text)
    prompts = chat_prompt_ids[:2]
    assert (
        lm.generate(prompts, max_new_tokens=8).tokens
        == smollm.generate(prompts, max_new_tokens=8).tokens
    )


@pytest.mark.slow
def test_transformers_loads_the_export(smollm, exported, chat_prompt_ids):
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    # Every tensor transformers holds is the one in the file (none was left at its random init).
    with safe_open(os.path.join(exported, "model.safetensors"), framework="pt") as h:
        for name, t in hf.state_dict().items():
            stored = h.get_tensor("model.embed_tokens.weight" if name == "lm_head.weight" else name)
            assert torch.equal(t, stored), name
    ids = chat_prompt_ids[0]
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0].numpy()
    ours = np.asarray(smollm.forward([ids], hidden_layers=None).logits[0])
    np.testing.assert_allclose(ours, ref, atol=LOGIT_ATOL, rtol=0)
    tok = transformers.AutoTokenizer.from_pretrained(exported)
    text = "Hello  world\n\n12345 <|im_start|>"
    assert tok.encode(text) == smollm.tokenizer.encode(text, add_special_tokens=True)
    assert tok.decode(ids) == smollm.tokenizer.decode(ids)


@pytest.mark.slow
def test_other_params_in_bfloat16(smollm, tmp_path):
    params = jax.tree.map(np.asarray, smollm.params)
    params["layers_3"]["attn"]["q_proj"]["kernel"] = (
        1.5 * params["layers_3"]["attn"]["q_proj"]["kernel"]
    )
    path = models.save_hf(smollm, tmp_path / "tuned", params=params, dtype="bfloat16")
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == "bfloat16"
    config, back = loaders.load_hf_dir(path)  # what models.load reads (as float32)
    assert config == smollm.config
    want = jax.tree.map(lambda x: x.astype(jax.numpy.bfloat16).astype(np.float32), params)
    _assert_same_params(back, want)
    base = np.asarray(smollm.params["layers_3"]["attn"]["q_proj"]["kernel"])
    got = back["layers_3"]["attn"]["q_proj"]["kernel"]
    assert np.abs(got - base).max() > 0.1 * np.abs(base).max()  # the scaled kernel was written


@pytest.mark.parametrize("variant", list(TINY_VARIANTS))
def test_tiny_variants_round_trip(tiny_dirs, variant, tmp_path):
    src, hf_src = tiny_dirs[variant]
    lm = models.load(src)
    path = models.save_hf(lm, tmp_path / variant)
    back = models.load(path)
    assert back.config == lm.config
    _assert_same_params(back.params, lm.params)
    # The names transformers itself wrote (a tied head is stored once either way).
    tied = {"lm_head.weight"} if lm.config.tie_embeddings else set()
    assert _tensor_names(path) == _tensor_names(src) - tied
    # transformers reads the same architecture back: logits of the original model.
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor(random_ids(np.random.default_rng(0), 2, 12))
    with torch.no_grad():
        np.testing.assert_allclose(hf(ids).logits.numpy(), hf_src(ids).logits.numpy(), atol=1e-5)


def test_gguf_rope_freqs_written_as_llama3_scaling(tiny_dirs, tmp_path):
    src, hf_src = tiny_dirs["llama3-long"]
    lm = models.load(src)
    factors = llamacpp_llama3_rope_factors(hf_src.config.rope_parameters, lm.config.head_dim)
    config = dataclasses.replace(
        lm.config, rope_scaling=None, rope_freq_factors=tuple(float(x) for x in factors)
    )
    path = models.save_hf(models.LM(config, lm.params, lm.tokenizer), tmp_path / "freqs")
    back = models.load(path).config
    assert back.rope_freq_factors is None and back.rope_scaling == lm.config.rope_scaling
    np.testing.assert_allclose(models.rope_inv_freq(back), models.rope_inv_freq(config), rtol=1e-6)
    # Equal factors are linear scaling; factors no rule explains are refused.
    linear = dataclasses.replace(config, rope_freq_factors=(4.0,) * (config.head_dim // 2))
    assert export.hf_config_dict(linear)["rope_scaling"] == {"factor": 4.0, "rope_type": "linear"}
    odd = dataclasses.replace(config, rope_freq_factors=(1.0, 3.0, 2.0, 5.0, 1.0, 7.0, 1.0, 2.0))
    with pytest.raises(NotImplementedError, match="rope_freqs"):
        export.hf_config_dict(odd)


def test_errors_leave_nothing_behind(tiny_lm, tmp_path, monkeypatch):
    bad = jax.tree.map(np.asarray, tiny_lm.params)
    bad["layers_1"]["mlp"]["up_proj"]["kernel"] = bad["layers_1"]["mlp"]["up_proj"]["kernel"][:, :5]
    with pytest.raises(ValueError, match=r"params do not fit.*layers_1.*up_proj.*\(64, 5\)"):
        models.save_hf(tiny_lm, tmp_path / "a", params=bad)
    del bad["layers_1"]
    with pytest.raises(ValueError, match="params do not fit.*tree differs"):
        models.save_hf(tiny_lm, tmp_path / "a", params=bad)
    with pytest.raises(ValueError, match="dtype must be one of"):
        models.save_hf(tiny_lm, tmp_path / "a", dtype="int8")
    with pytest.raises(NotImplementedError, match="qwen2 model without q/k/v bias"):
        export.hf_config_dict(dataclasses.replace(tiny_lm.config, architecture="qwen2"))

    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        models.save_hf(tiny_lm, target)
    assert os.listdir(target) == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        models.save_hf(tiny_lm, tmp_path / "file", overwrite=True)
    # A failure while writing removes the temporary directory and leaves the target as it was.
    monkeypatch.setattr(export, "save_tokenizer", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        models.save_hf(tiny_lm, target, overwrite=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["file", "out"] and os.listdir(target) == ["keep.txt"]
    # overwrite=True replaces the directory; an empty directory is simply filled.
    models.save_hf(tiny_lm, target, overwrite=True)
    assert set(os.listdir(target)) == FILES
    (tmp_path / "empty").mkdir()
    models.save_hf(tiny_lm, tmp_path / "empty")
    assert set(os.listdir(tmp_path / "empty")) == FILES
    assert sorted(os.listdir(tmp_path)) == ["empty", "file", "out"]


def test_only_process_zero_writes(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert models.save_hf(tiny_lm, tmp_path / "m") == str(tmp_path / "m")
    assert not os.path.exists(tmp_path / "m")
