"""Greedy generation with the embedded model on every device of a (simulated) multi-host run.

    launch/local.sh --processes 2 --devices 4 -- .venv/bin/python tests/distributed/run_generate.py

The model is placed on a ("data", "model") mesh over all devices of all processes (batches split
over "data"), so each host decodes its share of the rows; every process gets all the tokens
back. Process 0 prints one JSON line {"processes", "devices", "tokens", "texts"}; with
`--paths` also the other library paths that run compiled calls on the mesh:
"features" (`probes.extract_forward`, last prompt token, final layer), "cntp" (CNTP tokens)
and "ckplug" (`decoding.ckplug.score_gain` confidence gains), computed by `paths` below.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from introspect.train import partition  # noqa: E402

partition.maybe_initialize_distributed()

import jax  # noqa: E402
from multihost import QUESTIONS  # noqa: E402  (this script's folder is on sys.path)

from introspect import models, probes, sharding  # noqa: E402
from introspect.decoding import ckplug, cntp  # noqa: E402

CONTEXT = "Context: the answer is 7.\n"


def paths(lm, prompts, new_tokens: int) -> dict:
    """Feature extraction, CNTP and CK-PLUG on `prompts` (also run in one process by the test)."""
    feats = probes.extract_forward(lm, prompts, [[len(p) - 1] for p in prompts], layers=[-1])
    cn = cntp.generate(lm, prompts, max_new_tokens=new_tokens, temperature=0.7, seed=3,
                       max_trials=2, batch_size=len(prompts), progress=False)  # fmt: skip
    with_ctx = [lm.tokenizer.encode(CONTEXT, add_special_tokens=False) + p for p in prompts]
    gain = ckplug.score_gain(lm, with_ctx, prompts, cn.tokens, batch_size=len(prompts),
                             progress=False)  # fmt: skip
    return {
        "features": [f[0].tolist() for f in feats],
        "cntp": cn.tokens,
        "ckplug": [g.tolist() for g in gain["confidence_gain"]],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max_new_tokens", type=int, default=6)
    ap.add_argument("--model_axis", type=int, default=1, help="tensor-parallel degree")
    ap.add_argument("--paths", action="store_true", help="also features, CNTP and CK-PLUG")
    a = ap.parse_args()
    mesh = sharding.make_mesh(data=-1, model=a.model_axis) if jax.device_count() > 1 else None
    lm = models.load("smollm2-135m-instruct", mesh=mesh)
    prompts = [
        lm.tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                         add_generation_prompt=True)
        for q in QUESTIONS
    ]  # fmt: skip
    gen = lm.generate(prompts, max_new_tokens=a.max_new_tokens, batch_size=len(prompts),
                      progress=False)  # fmt: skip
    info = {"processes": jax.process_count(), "devices": jax.device_count(),
            "tokens": gen.tokens, "texts": gen.texts}  # fmt: skip
    if a.paths:
        info.update(paths(lm, prompts, a.max_new_tokens))
    if partition.is_main_process():
        print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
