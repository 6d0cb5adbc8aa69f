"""One sharding scheme: logical axes + rules for decoder params, the same layout in training and
inference; tensor-parallel and data-parallel generation equal single-device generation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from introspect import models, sharding


def _mesh(data, model):
    return SimpleNamespace(shape={"data": data, "model": model})


def test_decoder_rules_megatron_layout():
    mesh = _mesh(2, 4)
    spec = lambda path, shape, **kw: sharding.spec_for(path, shape, mesh, **kw)
    assert spec("layers_0/attn/q_proj/kernel", (576, 576)) == P(None, "model")
    assert spec("layers_0/attn/k_proj/bias", (192,)) == P("model")
    assert spec("layers_0/attn/o_proj/kernel", (576, 576)) == P("model", None)
    assert spec("layers_3/mlp/gate_proj/kernel", (576, 1536)) == P(None, "model")
    assert spec("layers_3/mlp/down_proj/kernel", (1536, 576)) == P("model", None)
    assert spec("embed/embedding", (49152, 576)) == P("model", None)
    assert spec("lm_head/kernel", (576, 49152)) == P(None, "model")
    assert spec("layers_0/attn_norm/scale", (576,)) == P()
    # a dimension the axis does not divide stays whole; small leaves stay replicated
    assert spec("layers_0/attn/k_proj/kernel", (576, 6)) == P()
    assert spec("layers_0/attn/q_proj/kernel", (576, 576), min_size=10**6) == P()
    # FSDP puts the data axis on the largest free dimension
    assert spec("layers_0/attn/q_proj/kernel", (576, 576), fsdp=True) == P("data", "model")
    # unmatched leaves (probe / SAE kernels): last dim "mlp" -> model, as a column-parallel kernel
    assert spec("w1", (16, 32), fsdp=True) == P("data", "model")
    assert spec("w1", (16, 32)) == P(None, "model")
    assert spec("b", (5, 3), fsdp=True) == P()
    assert spec("x", ()) == P()
    # the rules table decides: no tensor parallelism for the MLP
    rules = (("vocab", "model"), ("heads", "model"), ("mlp", None), ("embed", None))
    assert spec("layers_3/mlp/gate_proj/kernel", (576, 1536), rules=rules) == P()
    # optimiser moments carry the parameter path as a suffix
    assert spec("opt_state/0/mu/layers_0/attn/o_proj/kernel", (576, 576)) == P("model", None)


def test_make_mesh_errors_name_the_field():
    with pytest.raises(ValueError, match=r"config.mesh.model=3 must be an int >= 1 that divides"):
        sharding.make_mesh({"data": -1, "model": 3}, field="config.mesh")
    with pytest.raises(ValueError, match=r"mesh.data=2 x mesh.model=1 must equal"):
        sharding.make_mesh(data=2, model=1)
    mesh = sharding.make_mesh(sharding.default_config().mesh)
    assert mesh.axis_names == ("data", "model")


def test_runner_buckets_and_returns_input_order():
    runner = models.Runner()
    seqs = [[1] * n for n in (3, 9, 1, 5, 7)]
    seen = []

    def fn(chunk):
        seen.append((chunk.tokens.shape, list(chunk.indices)))
        assert chunk.valid.sum(1)[: len(chunk.indices)].tolist() == [
            len(seqs[i]) for i in chunk.indices
        ]
        assert not chunk.active[len(chunk.indices) :].any()
        return [len(seqs[i]) for i in chunk.indices]

    out = runner.map(seqs, fn, batch_size=2, pad_id=0)
    assert out == [3, 9, 1, 5, 7]
    assert [s[1] for s in seen] == [[1, 4], [3, 0], [2]]  # longest first
    assert [s[0][0] for s in seen] == [2, 2, 1] and all(s[0][1] == 16 for s in seen)


def test_load_cache_follows_the_file(tiny_dirs, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    src = tiny_dirs["llama3"][0]
    path = str(tmp_path / "copy")
    shutil.copytree(src, path)
    a = models.load(path)
    again = models.load(path)
    name = next(f for f in os.listdir(path) if f.endswith(".safetensors"))
    tensors = load_file(os.path.join(path, name))
    key = next(k for k in tensors if k.endswith("embed_tokens.weight"))
    tensors[key] = tensors[key] + 1.0
    save_file(tensors, os.path.join(path, name))
    b = models.load(path)
    emb = lambda lm: np.asarray(lm.params["embed"]["embedding"])
    np.testing.assert_array_equal(emb(a), emb(again))
    np.testing.assert_allclose(emb(b), emb(a) + 1.0, rtol=1e-6)


LYNX_LAYERS, LYNX_CUES = (10, 20), (" ", "\\n")


def exit_rule(q0):
    """A fixed random exit probe (the same in the subprocess) with threshold q0."""
    import jax
    import jax.numpy as jnp

    from introspect import probes

    probe = probes.make_probe("mlp", hidden=(16,))
    variables = probe.init(jax.random.PRNGKey(0), jnp.zeros((1, 576 * len(LYNX_LAYERS))))
    return probes.ExitRule(probe, variables, LYNX_LAYERS, LYNX_CUES, q0=q0, q1=1.0)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, optax
    import numpy as np
    from introspect import decoding, models, sharding, train
    from test_sharding import exit_rule
    prompts = json.loads(sys.argv[1])
    q0 = float(sys.argv[2])
    assert len(jax.devices()) == 8, jax.devices()
    out = {}
    for data, model in ((8, 1), (4, 2)):
        mesh = sharding.make_mesh(data=data, model=model)
        lm = models.load("smollm2-135m-instruct", mesh=mesh)
        gen = lm.generate(prompts, max_new_tokens=16)
        q = lm.params["layers_0"]["attn"]["q_proj"]["kernel"]
        # training lays the same params out exactly as LM serves them
        cfg = train.resolve_config({"mesh": {"data": data, "model": model}})
        # abstract (eval_shape): 8 replicas of the adam moments would not fit in host memory
        state = jax.eval_shape(
            lambda: train.init_train_state(lm.params, optax.adam(1e-3), jax.random.PRNGKey(0))
        )
        state_sh = train.partition.state_shardings(state, mesh, cfg)
        same = jax.tree.all(jax.tree.map(
            lambda s, p: s.spec == p.sharding.spec, state_sh.params, lm.params))
        out[f"{data}x{model}"] = {"tokens": gen.tokens, "q_spec": list(q.sharding.spec),
                                  "devices": len(q.sharding.device_set),
                                  "same_layout": bool(same)}
        if model == 2:  # LYNX online exit and forced answers (prefix KV reuse) on data x model
            lx = decoding.lynx.generate(lm, prompts, exit_rule(q0), max_new_tokens=16,
                                        answer_tokens=4)
            out["lynx"] = {"exit": lx.exit_token.tolist(), "traces": lx.trace_ids,
                           "answers": lx.answers}
        del lm, gen, q  # one model on the simulated devices at a time
        jax.clear_caches()
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_sharded_generation_equals_single_device(smollm, chat_prompt_ids):
    """Data parallel (8 x 1: 6 ragged prompts -> a batch bucket of 8, two padding rows, over 8
    devices) and data x tensor parallel (4 x 2) greedy generation, and LYNX (online exit rule
    in the loop, forced answers continuing the prefilled traces) on the 4 x 2 mesh equal
    single-device outputs token for token. (CNTP and CK-PLUG on a data x model mesh across two
    processes: tests/distributed/test_generate_multihost.py.)"""
    from introspect import decoding

    prompts = chat_prompt_ids + chat_prompt_ids[:2]
    # the exit threshold halfway between the two neighbouring cue probabilities furthest apart
    # in the upper fifth, so float differences between layouts cannot flip a decision
    # (an impossible rule generates exactly what plain generation does: test_exit_online)
    single = never = smollm.generate(prompts, max_new_tokens=16, exit_rule=exit_rule(2.0))
    p = np.sort(np.concatenate([c[~np.isnan(c)] for c in never.cue_probs]))
    lo, hi = int(0.8 * len(p)), int(0.97 * len(p))
    k = lo + int(np.argmax(np.diff(p[lo:hi])))
    q0 = float((p[k] + p[k + 1]) / 2)
    single_lynx = decoding.lynx.generate(
        smollm, prompts, exit_rule(q0), max_new_tokens=16, answer_tokens=4
    )
    assert 0 < single_lynx.exited.sum() < len(prompts)
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(prompts), repr(q0)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for mesh in ("8x1", "4x2"):
        assert result[mesh]["devices"] == 8, mesh
        assert result[mesh]["same_layout"], mesh
        assert result[mesh]["tokens"] == single.tokens, mesh
    assert result["4x2"]["q_spec"] == [None, "model"]
    assert result["lynx"]["exit"] == single_lynx.exit_token.tolist()
    assert result["lynx"]["traces"] == single_lynx.trace_ids
    assert result["lynx"]["answers"] == single_lynx.answers
