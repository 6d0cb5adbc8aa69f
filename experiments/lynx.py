"""LYNX end to end: exit probes at reasoning cues, conformal exit guarantee, online early exit.

    python -m experiments.lynx --config configs/lynx.py:smoke --workdir /tmp/lynx

1. Traces: the model reasons greedily on the train, calibration and test prompts.
2. Forced-exit labels: at every cue (`introspect.probes.cues`) the trace is cut before the cue,
   the exit string appended and an answer decoded greedily; label = the answer is right. The
   full trace is answered the same way (the "always full" baseline). Hidden states of the chosen
   layers at each cue token are the features. Traces, labels and features go through the
   generation store (made once per key, resumable).
3. Exit probe: an MLP on standardised features, class-balanced, trained by the one training loop
   (`probes.fit_probe`); Mondrian split conformal on the calibration cues gives, per delta, the
   rule "exit at the first cue whose prediction set is {1}" with P(exit | wrong) <= delta.
4. Test: the post-hoc scan (the authors' protocol) over the test traces for every delta, the
   baselines, and the same rule run online (`decoding.lynx.generate`: the probe is evaluated
   inside the compiled decode loop and the rows really stop), checked against the scan.
5. Table of the paper's form, reliability plot of the probe, trade-off plot.
"""

from __future__ import annotations

import hashlib
import os
import time

import jax
import numpy as np
from absl import logging

from introspect import data, decoding, metrics, models, probes, registry, results, sharding
from introspect import store as store_lib

ROLES = ("train", "calibration", "test")


def load_roles(config) -> dict[str, list[dict]]:
    """{role: examples}: roles naming the same split take consecutive, disjoint slices."""
    return data.load_roles(
        config.task,
        {r: tuple(config[f"{r}_split"]) for r in ROLES},
        data_dir=config.data_dir or None,
    )


def answer_line(text: str) -> str:
    """The graded part of a forced answer: its first non-empty line."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def grade_answer(example, text: str) -> bool:
    """Whether a forced answer is right: graded on its first non-empty line; a number answer
    by the first number of that line (the number right after the exit string: the answer
    "58 is smaller than 7" is 58), other answers by the task's grader."""
    line = answer_line(text)
    if example["answer_type"] == "number":
        return bool(data.grade_numeric(line, example["answer"], which="first")[1])
    return bool(data.grade(example, line)[1])


def reason(lm, prompts, rule, config):
    """Greedy reasoning (with the exit rule online, or to the end with None), then the forced
    answer on every row (`decoding.lynx.generate`)."""
    return decoding.lynx.generate(
        lm,
        prompts,
        rule,
        max_new_tokens=config.max_new_tokens,
        exit_text=config.exit_text,
        answer_tokens=config.answer_tokens,
        batch_size=config.batch_size,
        progress=True,
    )


def trace_records(lm, examples, config, *, role: str) -> list[dict]:
    """Per example: the greedy trace, its forced answer at the end and at every evaluable cue
    (graded), and the cue features; from the store when a previous run made them."""
    fmt = config.prompt_format
    cues = tuple(config.cues)
    layers = tuple(int(i) for i in config.layers)

    dim = len(layers) * lm.config.hidden_size

    def make(positions):
        exs = [examples[i] for i in positions]
        prompts = [data.build_prompt_ids(lm.tokenizer, ex, fmt) for ex in exs]
        full = reason(lm, prompts, None, config)
        cue_tok = [probes.evaluable_cues(lm.tokenizer, t, cues) for t in full.trace_ids]
        rows = [(r, int(c)) for r, cs in enumerate(cue_tok) for c in cs]
        forced = None
        if rows:
            forced = decoding.lynx.forced_answers(
                lm,
                prompts,
                full.trace_ids,
                rows,
                cues=cues,
                exit_text=config.exit_text,
                answer_tokens=config.answer_tokens,
                batch_size=config.batch_size,
                progress=True,
            )
        feats = probes.extract_forward(
            lm,
            [p + t for p, t in zip(prompts, full.trace_ids, strict=True)],
            [len(p) + c for p, c in zip(prompts, cue_tok, strict=True)],
            layers=layers,
            batch_size=max(1, config.batch_size // 4),
        )
        recs, k = [], 0
        for i, ex in enumerate(exs):
            n = len(cue_tok[i])
            texts = forced.texts[k : k + n] if n else []
            ntoks = [len(t) for t in forced.tokens[k : k + n]] if n else []
            k += n
            recs.append(
                {
                    "prompt_ids": np.asarray(prompts[i], np.int32),
                    "trace": np.asarray(full.trace_ids[i], np.int32),
                    "text": full.traces[i],
                    "final_answer": full.answers[i],
                    "final_answer_tokens": int(full.answer_tokens[i]),
                    "final_correct": grade_answer(ex, full.answers[i]),
                    "cue_tokens": np.asarray(cue_tok[i], np.int64),
                    "cue_answers": list(texts),
                    "cue_answer_tokens": np.asarray(ntoks, np.int64),
                    "cue_labels": np.asarray([grade_answer(ex, t) for t in texts], np.int8),
                    "features": np.asarray(feats[i], np.float32).reshape(n, dim),
                }
            )
        return recs

    if not config.use_store:
        return make(list(range(len(examples))))
    key = {
        **store_lib.model_key(config.model, config.dtype),
        "kind": "lynx-traces",
        "task": config.task,
        "prompt_format": fmt,
        "max_new_tokens": config.max_new_tokens,
        "decoding": "greedy",
        "cues": list(cues),
        "exit_text": config.exit_text,
        "answer_tokens": config.answer_tokens,
        "layers": list(layers),
        "grader": hashlib.sha256(grade_answer.__doc__.encode()).hexdigest()[:8],
    }
    root = config.store or os.path.join(config.results_root, "store")
    entry = store_lib.GenerationStore(root).entry(key)
    split = config[f"{role}_split"][0]
    ids = [f"{split}/{ex['id']}" for ex in examples]
    recs = entry.get(ids, make, shard_size=config.store_shard_size, desc=f"lynx {role}")
    logging.info("store lynx %s: %s", role, entry.counts)
    print(f"{role}: {entry.counts['made']} traces made, {entry.counts['loaded']} from the store")
    return recs


def _cues_of(recs):
    """(features [n, d], labels [n], per-record cue counts)."""
    feats = np.concatenate([r["features"] for r in recs], axis=0)
    labels = np.concatenate([r["cue_labels"] for r in recs]).astype(np.int32)
    return feats, labels, [len(r["cue_labels"]) for r in recs]


def evaluate_posthoc(recs, probs, rule) -> dict:
    """The exit rule scanned over finished test traces: exits, accuracy, tokens."""
    first = probes.first_exits(probs, rule)
    correct, tokens, wrong_exit = [], [], 0
    for r, k in zip(recs, first, strict=True):
        if k >= 0:
            ok = bool(r["cue_labels"][k])
            correct.append(ok)
            tokens.append(int(r["cue_tokens"][k]) + 1 + int(r["cue_answer_tokens"][k]))
            wrong_exit += not ok
        else:
            correct.append(bool(r["final_correct"]))
            tokens.append(len(r["trace"]) + int(r["final_answer_tokens"]))
    p_all = np.concatenate(probs) if probs else np.zeros((0,))
    y_all = np.concatenate([r["cue_labels"] for r in recs]) if recs else np.zeros((0,))
    negatives = y_all == 0
    fires = rule.decide(p_all)
    return {
        "exit_steps": [
            int(r["cue_tokens"][k]) if k >= 0 else -1 for r, k in zip(recs, first, strict=True)
        ],
        "accuracy": float(np.mean(correct)),
        "mean_tokens": float(np.mean(tokens)),
        "exit_rate": float(np.mean(first >= 0)),
        # What the guarantee bounds: test cues whose forced answer is wrong, where the rule fires.
        "premature_exit_rate": float(fires[negatives].mean()) if negatives.any() else None,
        # Traces that exited with a wrong answer (over all traces).
        "wrong_exit_rate": wrong_exit / len(recs),
    }


def run_online(lm, examples, recs, rule, config) -> dict:
    """The rule run inside the compiled decode loop on the test prompts."""
    prompts = [r["prompt_ids"].tolist() for r in recs]
    t0 = time.perf_counter()
    out = reason(lm, prompts, rule, config)
    seconds = time.perf_counter() - t0
    correct = [grade_answer(ex, a) for ex, a in zip(examples, out.answers, strict=True)]
    return {
        "exit_steps": out.exit_token.tolist(),
        "accuracy": float(np.mean(correct)),
        "mean_tokens": float(out.total_tokens.mean()),
        "reasoning_tokens": int(out.reasoning_tokens.sum()),
        "seconds": round(seconds, 2),
    }


def run(config, workdir: str) -> dict:
    t_start = time.perf_counter()
    registry.import_modules(config.get("imports"))
    if not config.cues:
        raise ValueError("config.cues must name at least one cue string")
    for d in config.deltas:
        if not 0.0 < float(d) < 1.0:
            raise ValueError(f"config.deltas must lie in (0, 1), got {d}")
    if config.task not in data.TASKS:
        raise ValueError(f"unknown task {config.task!r}; registered: {data.TASKS.names()}")
    out_dir = results.run_dir("lynx", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    mesh = sharding.make_mesh(config.mesh) if jax.device_count() > 1 else None
    lm = models.load(config.model, dtype=config.dtype, mesh=mesh)
    layers = tuple(int(i) for i in config.layers)
    lm.check_layers(layers)  # a layer the model lacks fails here, before any generation
    roles = load_roles(config)
    recs = {r: trace_records(lm, roles[r], config, role=r) for r in ROLES}

    x_tr, y_tr, _ = _cues_of(recs["train"])
    x_cal, y_cal, _ = _cues_of(recs["calibration"])
    x_te, y_te, n_te = _cues_of(recs["test"])
    print(
        f"cues: train {len(y_tr)} ({y_tr.mean():.2f} right when forced), calibration "
        f"{len(y_cal)} ({y_cal.mean():.2f}), test {len(y_te)} ({y_te.mean():.2f})"
    )
    if len(np.unique(y_tr)) < 2:
        raise ValueError(
            f"every forced answer at the {len(y_tr)} training cues is "
            f"{'right' if y_tr.mean() else 'wrong'}; the exit probe needs both. Use more "
            "training traces, an easier task or a stronger model (config.model)."
        )
    if not len(y_cal) or not len(y_te):
        raise ValueError("the calibration and test traces have no evaluable cues; more traces?")
    fit = probes.fit_probe(
        config.probe,
        config.train,
        {"features": x_tr, "label": y_tr.astype(np.float32)},
        workdir=os.path.join(workdir, "train"),
        meta={"model": config.model, "layers": list(layers), "cues": list(config.cues)},
    )
    probe_dir = os.path.join(workdir, "probe")
    if not os.path.exists(probe_dir):
        probes.save_probe(probe_dir, fit)
    p_cal = probes.predict(fit.model, fit.variables, x_cal)
    p_te = probes.predict(fit.model, fit.variables, x_te)
    probs_te = np.split(p_te, np.cumsum(n_te)[:-1])

    def auroc(p, y):
        return float(metrics.auroc(p, y)) if 0 < y.sum() < y.size else None

    full = {
        "accuracy": float(np.mean([r["final_correct"] for r in recs["test"]])),
        "mean_tokens": float(
            np.mean([len(r["trace"]) + r["final_answer_tokens"] for r in recs["test"]])
        ),
    }
    first_cue = probes.ExitRule(
        fit.model, fit.variables, layers, tuple(config.cues), q0=-1.0, q1=1.0
    )  # S == {1} at every cue: exit at the first one
    first = evaluate_posthoc(recs["test"], probs_te, first_cue)
    first["token_savings"] = 1.0 - first["mean_tokens"] / full["mean_tokens"]
    online_full = None
    if config.online:
        online_full = run_online(lm, roles["test"], recs["test"], None, config)
    rows = []
    for delta in config.deltas:
        rule = probes.ExitRule.calibrate(
            fit.model,
            fit.variables,
            layers=layers,
            cues=config.cues,
            cal_probs=p_cal,
            cal_labels=y_cal,
            delta=float(delta),
        )
        row = {"delta": float(delta), "q0": rule.q0, "q1": rule.q1}
        row.update(evaluate_posthoc(recs["test"], probs_te, rule))
        row["token_savings"] = 1.0 - row["mean_tokens"] / full["mean_tokens"]
        if config.online:
            on = run_online(lm, roles["test"], recs["test"], rule, config)
            on["agreement"] = float(
                np.mean(np.array(on["exit_steps"]) == np.array(row["exit_steps"]))
            )
            on["token_savings"] = 1.0 - on["mean_tokens"] / online_full["mean_tokens"]
            on["speedup"] = online_full["seconds"] / max(on["seconds"], 1e-9)
            row["online"] = on
        rows.append(row)
        print(_row_line(row))

    m = {
        "model": config.model,
        "task": config.task,
        "num_traces": {r: len(recs[r]) for r in ROLES},
        "num_cues": {"train": len(y_tr), "calibration": len(y_cal), "test": len(y_te)},
        "cue_accuracy": {
            "train": float(y_tr.mean()),
            "calibration": float(y_cal.mean()),
            "test": float(y_te.mean()),
        },
        "probe": {
            "test_auroc": auroc(p_te, y_te),
            "calibration_auroc": auroc(p_cal, y_cal),
            "train_steps": int(fit.result.state.step),
        },
        "full": full,
        "first_cue": {k: v for k, v in first.items() if k != "exit_steps"},
        "deltas": [{k: v for k, v in r.items() if k != "exit_steps"} for r in rows],
        "seconds": 0.0,
    }
    if online_full is not None:
        m["online_full"] = {k: v for k, v in online_full.items() if k != "exit_steps"}
        for r in m["deltas"]:
            r["online"].pop("exit_steps", None)
    os.makedirs(out_dir, exist_ok=True)
    if len(y_te):
        metrics.plot_reliability_diagram(
            p_te,
            y_te,
            num_bins=config.num_bins,
            title=f"LYNX exit probe on {config.task} test cues",
            path=f"{out_dir}/reliability.png",
        )
    plot_tradeoff(m, f"{out_dir}/tradeoff.png")
    m["seconds"] = round(time.perf_counter() - t_start, 1)
    table = render_table(m)
    results.write_json(f"{out_dir}/metrics.json", m)
    results.write_text(f"{out_dir}/table.md", table)
    print(table)
    print(f"results: {out_dir}/ ({m['seconds']:.0f} s)")
    return m


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def _row_line(row) -> str:
    s = (
        f"delta {row['delta']}: premature exits {_fmt(row['premature_exit_rate'])}, accuracy "
        f"{row['accuracy']:.3f}, tokens {row['mean_tokens']:.1f} (saves {row['token_savings']:.1%})"
    )
    if "online" in row:
        on = row["online"]
        s += f"; online agrees {on['agreement']:.0%}, {on['speedup']:.2f}x faster"
    return s


def render_table(m) -> str:
    full, first = m["full"], m["first_cue"]
    online = "online_full" in m
    lines = [
        f"# LYNX early exit: {m['model']} on {m['task']}",
        "",
        f"Test traces {m['num_traces']['test']} ({m['num_cues']['test']} cues; forced answers "
        f"right at {m['cue_accuracy']['test']:.2f} of them). Exit probe AUROC on test cues "
        f"{_fmt(m['probe']['test_auroc'])}. Premature-exit rate = P(the rule exits | the answer "
        "forced at that cue is wrong), over test cues: conformal bound delta.",
        "",
        "| method | premature exits | accuracy | mean tokens | token savings | exit rate |"
        + (" online: agrees with scan | online tokens | online speed-up |" if online else ""),
        "|---|---|---|---|---|---|" + ("---|---|---|" if online else ""),
        f"| always full | - | {full['accuracy']:.3f} | {full['mean_tokens']:.1f} | 0% | 0.00 |"
        + (f" - | {m['online_full']['mean_tokens']:.1f} | 1.00x |" if online else ""),
        f"| first cue | {_fmt(first['premature_exit_rate'])} | {first['accuracy']:.3f} | "
        f"{first['mean_tokens']:.1f} | {first['token_savings']:.1%} | {first['exit_rate']:.2f} |"
        + (" - | - | - |" if online else ""),
    ]
    for r in m["deltas"]:
        line = (
            f"| LYNX delta={r['delta']} | {_fmt(r['premature_exit_rate'])} | "
            f"{r['accuracy']:.3f} | {r['mean_tokens']:.1f} | {r['token_savings']:.1%} | "
            f"{r['exit_rate']:.2f} |"
        )
        if online:
            on = r["online"]
            line += f" {on['agreement']:.0%} | {on['mean_tokens']:.1f} | {on['speedup']:.2f}x |"
        lines.append(line)
    lines += ["", f"Runtime {m['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def plot_tradeoff(m, path: str) -> None:
    """Premature-exit rate against delta (with the bound) and token savings against delta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = [r["delta"] for r in m["deltas"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    pre = [np.nan if r["premature_exit_rate"] is None else r["premature_exit_rate"]
           for r in m["deltas"]]  # fmt: skip
    a.plot(d, pre, "o-", label="premature-exit rate (test cues)")
    a.plot([0, max(d)], [0, max(d)], "k--", lw=1, label="bound: delta")
    a.set_xlabel("delta")
    a.set_ylabel("P(exit | forced answer wrong)")
    a.legend(fontsize=8)
    b.plot(d, [100 * r["token_savings"] for r in m["deltas"]], "o-", label="post-hoc scan")
    if "online_full" in m:
        b.plot(d, [100 * r["online"]["token_savings"] for r in m["deltas"]], "s--", label="online")
    b.set_xlabel("delta")
    b.set_ylabel("token savings vs full (%)")
    b.legend(fontsize=8)
    fig.suptitle(f"LYNX on {m['task']}")
    fig.tight_layout()
    metrics.save_png(fig, path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "lynx", workdir_help="probe checkpoints and the saved probe")
