"""Hugging Face directories with a missing or broken config.json (or index) fail with an error
that names the file."""

import json
import os
import re

import pytest
from tiny_models import write_tiny

from introspect import models
from introspect.models import loaders


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf-good")
    write_tiny(str(path), "llama-sharded", seed=400)  # sharded: has model.safetensors.index.json
    return path


def _copy(src, dst):
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_broken_config_json_names_the_file(good_dir, tmp_path):
    bad = _copy(good_dir, tmp_path / "broken")
    (bad / "config.json").write_text('{"model_type": "llama", "hidden_size": 64,')  # truncated
    cfg = re.escape(str(bad / "config.json"))
    with pytest.raises(ValueError, match=f"{cfg} is not valid JSON") as info:
        loaders.load_hf_dir(str(bad))
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    with pytest.raises(ValueError, match=f"{cfg} is not valid JSON"):
        models.load(str(bad))


def test_config_json_that_is_not_an_object(good_dir, tmp_path):
    bad = _copy(good_dir, tmp_path / "list")
    (bad / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match=r"config\.json must hold a JSON object.*got list"):
        loaders.load_hf_dir(str(bad))


def test_binary_config_json(good_dir, tmp_path):
    bad = _copy(good_dir, tmp_path / "binary")
    (bad / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        loaders.load_hf_dir(str(bad))


def test_missing_config_json(good_dir, tmp_path):
    bad = _copy(good_dir, tmp_path / "noconfig")
    (bad / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no config\.json.*found \[.*safetensors"):
        loaders.load_hf_dir(str(bad))
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        models.load(str(bad))
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        loaders.load_hf_dir(str(tmp_path / "nowhere"))


def test_broken_safetensors_index(good_dir, tmp_path):
    bad = _copy(good_dir, tmp_path / "badindex")
    index = bad / "model.safetensors.index.json"
    index.write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json is not valid JSON"):
        loaders.load_hf_dir(str(bad))
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match=r"index\.json: expected a \"weight_map\" object"):
        loaders.load_hf_dir(str(bad))


def test_good_dir_still_loads(good_dir):
    config, params = loaders.load_hf_dir(str(good_dir))
    assert config.architecture == "llama" and config.num_layers == 2
    assert set(params) >= {"embed", "final_norm", "layers_0", "layers_1"}
