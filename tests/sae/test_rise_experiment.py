"""experiments.rise end to end on the embedded model (small): metrics.json has the fields
scripts rely on, the alpha = 0 steering rows reproduce the unsteered traces, a rerun reads the
store and the SAE checkpoint; config errors come before any generation."""

import json

import pytest

from configs import rise as rise_config
from experiments import rise


def _config(tmp_path):
    # Small: 16 + 8 traces of 32 tokens, batch 8, a 256-latent TopK SAE, one steered latent.
    c = rise_config.get_config("smoke")
    c.train_split = ("train", 16)
    c.test_split = ("test", 8)
    c.max_new_tokens = 32
    c.batch_size = 8
    c.sae.num_latents = 256
    c.sae.k = 8
    c.sae.train.num_steps = 60
    c.sae.train.batch_size = 16
    c.sae.train.eval_every = 0
    c.sae.train.log_every = 20
    c.alphas = (0.0, 1.0)
    c.num_clusters = 3
    c.num_loss_sequences = 4
    c.num_steer_prompts = 4
    c.data_dir = str(tmp_path / "tfds")
    c.results_root = str(tmp_path / "results")
    c.run_name = "t"
    return c


@pytest.fixture(scope="module")
def rise_run(smollm, tmp_path_factory):
    del smollm  # loaded once per session (models.load's cache)
    tmp = tmp_path_factory.mktemp("rise")
    m = rise.run(_config(tmp), str(tmp / "work"))
    return tmp, m


def test_metrics_fields(rise_run):
    tmp, m = rise_run
    out = tmp / "results" / "rise" / "t"
    for f in ("config.json", "metrics.json", "table.md", "latent_map.png", "steering.png",
              "sae_params.npz"):  # fmt: skip
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    assert 0 <= saved["fvu"] < 2 and 0 < saved["l0"] <= 8 and 0 <= saved["dead_fraction"] <= 1
    assert saved["lm_loss"]["tokens"] > 0 and saved["lm_loss"]["increase"] > -1
    rows = saved["steering"]
    assert rows[0]["vector"] == "none" and rows[0]["alpha"] == 0.0
    assert all(r["alpha"] == 1.0 for r in rows[1:])
    for r in rows:
        for k in ("accuracy", "length", "stated_confidence", "stated_parse_rate",
                  "mean_token_prob", "self_certainty", "behaviour_counts"):  # fmt: skip
            assert k in r, k
        assert 0 <= r["accuracy"] <= 1 and 0 < r["mean_token_prob"] <= 1
    # alpha = 0 in the sweep is plain greedy generation: the unsteered traces' tokens
    assert saved["steering_check"]["alpha0_equals_traces"] == 1.0
    assert set(saved["behaviours"]) == set(rise.sae.BEHAVIOURS)
    assert sum(c["size"] for c in saved["clusters"]) == saved["live_latents"]
    assert "| none | - | +0.00 |" in (out / "table.md").read_text()


def test_rerun_reads_the_store(rise_run, capsys):
    tmp, m = rise_run
    c = _config(tmp)
    c.run_name = "again"
    c.steer_behaviours = ()
    c.steer_confidence = False
    m2 = rise.run(c, str(tmp / "work"))
    assert "0 traces made, 16 from the store" in capsys.readouterr().out
    assert m2["fvu"] == m["fvu"] and m2["l0"] == m["l0"]  # the SAE restored from its checkpoint
    assert len(m2["steering"]) == 1


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("layer", 30, "config.layer must be in \\[1, 29\\]"),
        ("layer", 0, "config.layer must be in \\[1, 29\\]"),
        ("pool", "max", "config.pool must be"),
        ("steer_behaviours", ("dancing",), "unknown \\['dancing'\\]"),
        ("alpha_unit", "sigma", "config.alpha_unit"),
        ("sae.k", 300, "k"),
    ],
)
def test_config_errors(tmp_path, smollm, field, value, match):
    del smollm
    c = _config(tmp_path)
    node, _, leaf = field.rpartition(".")
    (c[node] if node else c)[leaf] = value
    with pytest.raises(ValueError, match=match):
        rise.run(c, str(tmp_path / "work"))
    assert not (tmp_path / "results" / "store").exists()  # failed before generating
