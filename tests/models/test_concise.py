"""ConCISE confidence injection on the embedded model: no injection = plain greedy decoding;
an injection cuts at the cue's first token and inserts the phrase; errors."""

import pytest

from introspect.decoding import concise


@pytest.fixture(scope="module")
def count_prompt(smollm):
    msgs = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    return smollm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True)


def test_injection_at_the_cue(smollm, count_prompt):
    lm = smollm
    plain = lm.generate([count_prompt], max_new_tokens=24).tokens[0]
    assert "7" in lm.tokenizer.decode(plain)  # the cue below occurs in the greedy text
    none = concise.inject_confidence(lm, [count_prompt], cues=["7"], max_injections=0,
                                     max_new_tokens=24)  # fmt: skip
    assert none.tokens[0] == plain and none.injections.tolist() == [0]

    phrase = " (sure)"
    out = concise.inject_confidence(lm, [count_prompt, count_prompt[:-3] + count_prompt[-3:]],
                                    cues=["7"], phrase=phrase, max_injections=2,
                                    max_new_tokens=24)  # fmt: skip
    ids = lm.tokenizer.encode(phrase)
    pieces = [lm.tokenizer.decode([t]) for t in plain]
    start = next(i for i, p in enumerate(pieces) if "7" in p)
    assert out.tokens[0][: start + len(ids)] == plain[:start] + ids
    assert out.injections[0] >= 1
    assert out.texts[0].count(phrase.strip()) >= out.injections[0]  # the model may copy it
    assert out.generated[0] + out.injections[0] * len(ids) == len(out.tokens[0])
    assert out.generated[0] <= 24
    assert out.tokens[0] == out.tokens[1]  # same prompt, same result in one batch


def test_errors(smollm, count_prompt):
    with pytest.raises(ValueError, match="max_injections"):
        concise.inject_confidence(smollm, [count_prompt], max_injections=-1)
    with pytest.raises(ValueError, match="cues"):
        concise.inject_confidence(smollm, [count_prompt], cues=[])
    with pytest.raises(ValueError, match="phrase"):
        concise.inject_confidence(smollm, [count_prompt], phrase="")
