"""Outside generations, imported from JSONL and scored teacher-forced, give the same records and
signals as the same generations made in-process (the embedded SmolLM2, real TriviaQA prompts)."""

import json

import numpy as np
import pytest

from introspect import data, signals, store


@pytest.fixture(scope="module")
def made_and_imported(smollm, tmp_path_factory):
    examples = data.load_task("triviaqa", "validation", num=8)
    ids = [data.build_prompt_ids(smollm.tokenizer, ex, "plain") for ex in examples]
    # 24 new tokens: some answers stop (EOS scored too), some are cut off ("length").
    gen = smollm.generate(ids, max_new_tokens=24, return_stats=True, batch_size=8)
    made = store.generation_records(gen, ids)
    path = tmp_path_factory.mktemp("gen") / "outside.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": ex["id"], "response": r["text"], "finish_reason": r["finish_reason"]})
            + "\n"
            for ex, r in zip(examples, made, strict=True)
        )
    )
    rows = store.read_generations(path)
    outside = [rows[("", "", ex["id"])] for ex in examples]
    imported = store.scored_records(
        smollm,
        ids,
        [r["response"] for r in outside],
        [r["finish_reason"] for r in outside],
        batch_size=4,
    )
    return made, imported


def test_both_finish_reasons_are_covered(made_and_imported):
    made, _ = made_and_imported
    assert {r["finish_reason"] for r in made} == {"stop", "length"}


def test_imported_records_match_the_generated_ones(made_and_imported):
    made, imported = made_and_imported
    for a, b in zip(made, imported, strict=True):
        np.testing.assert_array_equal(a["prompt_ids"], b["prompt_ids"])
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
        assert a["text"] == b["text"] and a["finish_reason"] == b["finish_reason"]
        # Incremental decoding (KV cache) vs one teacher-forced pass: float32 rounding only.
        np.testing.assert_allclose(a["logprobs"], b["logprobs"], rtol=1e-4, atol=2e-4)
        np.testing.assert_allclose(a["stats"], b["stats"], rtol=1e-4, atol=2e-4)


def test_imported_generations_score_identically(made_and_imported, smollm):
    made, imported = made_and_imported
    vocab = smollm.config.vocab_size
    a = signals.compute_all(*store.logit_inputs(made), vocab_size=vocab)
    b = signals.compute_all(*store.logit_inputs(imported), vocab_size=vocab)
    assert set(a) == set(b) == set(signals.stats_signals())
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=2e-4, err_msg=name)


def test_response_ids_errors(smollm):
    with pytest.raises(ValueError, match="finish_reason must be"):
        store.response_ids(smollm, "x", "eos")
    with pytest.raises(ValueError, match="no tokens to score"):
        store.response_ids(smollm, "", "length")
    assert store.response_ids(smollm, "", "stop") == [smollm.tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        store.scored_records(smollm, [[1], [2]], ["a"])
    with pytest.raises(ValueError, match="1 finish_reasons for 2 responses"):
        store.scored_records(smollm, [[1], [2]], ["a", "b"], ["stop"])
