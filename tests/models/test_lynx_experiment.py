"""experiments.lynx end to end on the embedded model (small): metrics.json has the fields
scripts rely on, the online exit agrees with the post-hoc scan, a rerun reads the store; config
errors."""

import json

import numpy as np
import pytest

from configs import lynx as lynx_config
from experiments import lynx


def _config(tmp_path):
    # Small: 16 traces per split of 32 tokens, batch 16 everywhere (one compiled shape per
    # program, shared by the splits).
    c = lynx_config.get_config("smoke")
    c.train_split = ("train", 16)
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


@pytest.fixture(scope="module")
def lynx_run(smollm, tmp_path_factory):
    del smollm  # loaded once per session (models.load's cache)
    tmp = tmp_path_factory.mktemp("lynx")
    m = lynx.run(_config(tmp), str(tmp / "work"))
    return tmp, m


def test_metrics_fields(lynx_run):
    tmp, m = lynx_run
    out = tmp / "results" / "lynx" / "t"
    for f in ("config.json", "metrics.json", "table.md", "reliability.png", "tradeoff.png"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    assert [d["delta"] for d in saved["deltas"]] == [0.1, 0.4]
    for d in saved["deltas"]:
        for k in ("delta", "premature_exit_rate", "accuracy", "mean_tokens", "token_savings"):
            assert k in d, k
        assert 0 <= d["accuracy"] <= 1 and d["mean_tokens"] > 0
        assert d["token_savings"] == pytest.approx(
            1 - d["mean_tokens"] / saved["full"]["mean_tokens"]
        )
        # the same probe and thresholds online and post hoc: the same exits
        assert d["online"]["agreement"] == 1.0
    assert set(saved["full"]) >= {"accuracy", "mean_tokens"}
    # a looser delta never exits less
    assert saved["deltas"][1]["exit_rate"] >= saved["deltas"][0]["exit_rate"]
    assert saved["first_cue"]["exit_rate"] >= saved["deltas"][1]["exit_rate"]
    assert (tmp / "work" / "probe").is_dir()
    assert "| LYNX delta=0.1 |" in (out / "table.md").read_text()


def test_rerun_reads_the_store(lynx_run, capsys):
    tmp, m = lynx_run
    c = _config(tmp)
    c.run_name = "again"
    c.online = False
    m2 = lynx.run(c, str(tmp / "work"))
    assert "0 traces made, 16 from the store" in capsys.readouterr().out
    for a, b in zip(m["deltas"], m2["deltas"], strict=True):
        assert a["accuracy"] == b["accuracy"] and a["mean_tokens"] == b["mean_tokens"]
    assert np.isclose(m["probe"]["test_auroc"] or 0, m2["probe"]["test_auroc"] or 0)


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
