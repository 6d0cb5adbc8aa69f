"""experiments.lynx: config errors. (The end-to-end run on the embedded model takes ~225 s
cold on 2 cores, 130 s of it prefilling forced-answer prefixes; it joins the suite once forced
answers reuse the trace's KV cache. Online-vs-post-hoc identity on the real model is tested in
tests/probes/test_exit_online.py.)"""

import pytest

from configs import lynx as lynx_config
from experiments import lynx


def _config(tmp_path):
    # Small: 32 / 16 / 16 traces of 32 tokens, batch 16 everywhere (few compiled shapes); the
    # 32 training traces have 45 cues, 5 of them with a right forced answer.
    c = lynx_config.get_config("smoke")
    c.train_split = ("train", 32)
    c.calibration_split = ("calibration", 16)
    c.test_split = ("test", 16)
    c.max_new_tokens = 32
    c.answer_tokens = 4
    c.batch_size = 16
    c.deltas = (0.1, 0.4)
    c.train.num_steps = 60
    c.train.batch_size = 16
    c.train.schedule.warmup_steps = 5
    c.data_dir = str(tmp_path / "tfds")
    c.results_root = str(tmp_path / "results")
    c.run_name = "t"
    return c


def test_config_errors(tmp_path):
    c = _config(tmp_path)
    c.deltas = (0.1, 1.0)
    with pytest.raises(ValueError, match="deltas must lie in \\(0, 1\\)"):
        lynx.run(c, str(tmp_path / "w"))
    c = _config(tmp_path)
    c.cues = ()
    with pytest.raises(ValueError, match="cues must name at least one cue"):
        lynx.run(c, str(tmp_path / "w"))
    c = _config(tmp_path)
    c.layers = (10, 99)
    with pytest.raises(ValueError, match="out of range"):
        lynx.run(c, str(tmp_path / "w"))
    with pytest.raises(ValueError, match="unknown config variant"):
        lynx_config.get_config("huge")
