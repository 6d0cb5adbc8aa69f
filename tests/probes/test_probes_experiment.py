"""The train_probe experiment end to end on the embedded model (slow: generation on SmolLM2)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from introspect import probes


@pytest.mark.slow
def test_train_probe_smoke_end_to_end(smollm, tmp_path):
    from configs.train_probe import get_config
    from experiments import train_probe

    config = get_config("smoke")
    config.num_questions = 64
    config.train.num_steps = 200
    config.train.batch_size = 32
    config.results_root = str(tmp_path / "results")
    workdir = str(tmp_path / "work")
    m = train_probe.run(config, workdir)

    assert m["num_questions"] == len(train_probe.make_questions(config))
    assert 0.0 < m["answer_accuracy"] < 1.0
    assert m["val_auroc"] is None or 0.0 <= m["val_auroc"] <= 1.0
    assert 0.0 <= m["val_accuracy"] <= 1.0 and m["train_steps"] == 200
    (run,) = os.listdir(tmp_path / "results" / "train_probe")
    out = tmp_path / "results" / "train_probe" / run
    assert json.loads((out / "metrics.json").read_text())["val_accuracy"] == m["val_accuracy"]
    assert (out / "table.md").read_text().count("|") > 10
    assert any(d.isdigit() for d in os.listdir(os.path.join(workdir, "train", "checkpoints")))

    store = probes.FeatureStore(os.path.join(workdir, "features"))
    assert store.columns["features"]["shape"] == [3 * 576]
    model, variables, spec = probes.load_probe(os.path.join(workdir, "probe"))
    assert spec["meta"]["layers"] == [10, 20, 30]
    x = store[np.arange(8)]["features"]
    assert probes.predict(model, variables, x).shape == (8,)

    # Running again reuses the features and the finished training (no second extraction).
    index_before = (tmp_path / "work" / "features" / "index.json").read_text()
    again = train_probe.run(config, workdir)
    assert again["resumed_from"] == 200 and again["val_auroc"] == m["val_auroc"]
    assert (tmp_path / "work" / "features" / "index.json").read_text() == index_before

    # The two extraction paths agree: states captured by generate (step 0) == lm.forward at the
    # last prompt token.
    q = train_probe.make_questions(config)[:3]
    prompts = [
        smollm.tokenizer.apply_chat_template(
            [{"role": "user", "content": config.prompt.format(question=x["question"])}],
            add_generation_prompt=True,
        )
        for x in q
    ]
    gen = smollm.generate(prompts, max_new_tokens=8, hidden_layers=[10, 30], hidden_steps=[0])
    from_gen = probes.generation_features(gen)
    pos = [probes.select_positions("last_prompt", prompt_len=len(p), total_len=len(p))
           for p in prompts]  # fmt: skip
    from_fwd = np.concatenate(probes.extract_forward(smollm, prompts, pos, layers=[10, 30]))
    np.testing.assert_allclose(from_fwd, from_gen, rtol=1e-3, atol=1e-3)
