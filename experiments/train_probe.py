"""Correctness probe: predict from the last-prompt-token hidden state whether the greedy answer of
the embedded model is right (features extracted once, probe trained by `introspect.train`).

python -m experiments.train_probe --config configs/train_probe.py:smoke --workdir /tmp/probe
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from experiments._cli import start_process
from introspect import data, metrics, models, probes, registry, results

_CONFIG = config_flags.DEFINE_config_file("config", "configs/train_probe.py", "experiment config")
_WORKDIR = flags.DEFINE_string("workdir", None, "features, checkpoints and the saved probe")


def make_questions(config) -> list[dict]:
    """`num_questions` questions over `digits`, duplicates (same expression) dropped."""
    digits = tuple(config.digits)
    if not digits:
        raise ValueError("config.digits must name at least one operand size")
    per = -(-config.num_questions // len(digits))
    seen, out = set(), []
    for k, d in enumerate(digits):
        for q in data.arithmetic_questions(
            per,
            seed=config.seed + 1000 * k,
            digits=d,
            operators=tuple(config.operators),
            num_operands=config.num_operands,
        ):
            if q["expression"] not in seen:
                seen.add(q["expression"])
                out.append({**q, "id": len(out)})
    return out


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of a seeded permutation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"config.val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def run(config, workdir: str) -> dict:
    """Run the experiment described by `config` in `workdir`; returns the metrics dict."""
    t_start = time.perf_counter()
    registry.import_modules(config.get("imports"))  # user modules that register losses/probes
    out_dir = results.run_dir("train_probe", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    lm = models.load(config.model, dtype=config.dtype)
    questions = make_questions(config)
    layers = [int(x) for x in config.layers]

    answers: dict[int, dict] = {}

    def extract(chunk):
        prompts = [
            lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": config.prompt.format(question=q["question"])}],
                add_generation_prompt=True,
            )
            for q in chunk
        ]
        gen = lm.generate(
            prompts,
            max_new_tokens=config.max_new_tokens,
            hidden_layers=layers,
            hidden_steps=[0],
            batch_size=config.batch_size,
        )
        labels = []
        for q, text in zip(chunk, gen.texts, strict=True):
            extracted, correct = data.grade_numeric(text, q["answer"])
            labels.append(int(correct))
            answers[q["id"]] = {"response": text, "extracted": extracted}
        return {
            "features": probes.generation_features(gen, step=0),
            "label": np.asarray(labels, np.int8),
            "id": np.asarray([q["id"] for q in chunk], np.int32),
        }

    meta = {
        "model": config.model,
        "dtype": config.dtype,
        "layers": layers,
        "position": "last_prompt",
        "prompt": config.prompt,
        "max_new_tokens": config.max_new_tokens,
        "questions": [q["expression"] for q in questions],
    }
    t0 = time.perf_counter()
    n_chunks = -(-len(questions) // config.batch_size)
    store = probes.build_store(
        os.path.join(workdir, "features"),
        questions,
        extract,
        meta=meta,
        chunk_size=config.batch_size,
        progress=lambda done, total: print(f"features: {done}/{total} questions", flush=True),
    )
    extract_s = time.perf_counter() - t0
    labels = store.column("label").astype(np.float32)
    ids = store.column("id")
    print(
        f"model {lm}\nanswer accuracy {labels.mean():.3f} on {len(labels)} questions "
        f"({int(labels.sum())} correct / {int(len(labels) - labels.sum())} wrong), "
        f"features [{len(store)}, {store.columns['features']['shape'][0]}] from layers {layers} "
        f"in {extract_s:.1f} s ({n_chunks} shards)"
    )

    train_idx, val_idx = split(len(store), config.val_fraction, config.seed)
    fit = probes.fit_probe(
        config.probe,
        config.train,
        probes.Subset(store, train_idx),
        workdir=os.path.join(workdir, "train"),
        val_source=probes.Subset(store, val_idx),
        meta={k: meta[k] for k in ("model", "dtype", "layers", "position", "prompt")},
    )
    probe_dir = os.path.join(workdir, "probe")
    exists = os.path.exists(probe_dir)
    if jax.process_count() > 1:  # every process saves (orbax is collective) or none does
        exists = bool(multihost_utils.broadcast_one_to_all(np.int32(exists)))
    if not exists:
        probes.save_probe(probe_dir, fit)

    p_val = probes.predict(fit.model, fit.variables, probes.Subset(store, val_idx))
    p_train = probes.predict(fit.model, fit.variables, probes.Subset(store, train_idx))
    y_val, y_train = labels[val_idx], labels[train_idx]

    def auroc(p, y):
        return float(metrics.auroc(p, y)) if 0 < y.sum() < y.size else None

    m = {
        "model": config.model,
        "num_questions": int(len(store)),
        "answer_accuracy": float(labels.mean()),
        "layers": layers,
        "probe": config.probe.name,
        "loss": config.probe.loss.name,
        "num_train": int(train_idx.size),
        "num_val": int(val_idx.size),
        "val_auroc": auroc(p_val, y_val),
        "val_accuracy": float(np.mean((p_val > 0.5) == (y_val > 0.5))),
        "val_majority_accuracy": float(max(y_val.mean(), 1 - y_val.mean())),
        "train_auroc": auroc(p_train, y_train),
        "train_accuracy": float(np.mean((p_train > 0.5) == (y_train > 0.5))),
        "train_steps": int(fit.result.state.step),
        "resumed_from": fit.result.resumed_from,
        "train_steps_per_second": round(fit.result.steps_per_second, 1),
        "extract_seconds": round(extract_s, 1),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    rows = [
        {
            "id": int(ids[i]),
            "question": questions[int(ids[i])]["question"],
            "answer": questions[int(ids[i])]["answer"],
            **answers.get(int(ids[i]), {}),
            "correct": bool(labels[i]),
            "p_correct": float(p),
        }
        for i, p in zip(val_idx, p_val, strict=True)
    ]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    table = (
        "| split | n | AUROC | accuracy | majority-class accuracy |\n|---|---|---|---|---|\n"
        f"| train | {m['num_train']} | {fmt(m['train_auroc'])} | {fmt(m['train_accuracy'])} | "
        f"{fmt(max(y_train.mean(), 1 - y_train.mean()))} |\n"
        f"| held-out | {m['num_val']} | {fmt(m['val_auroc'])} | {fmt(m['val_accuracy'])} | "
        f"{fmt(m['val_majority_accuracy'])} |\n"
    )
    results.write_json(f"{out_dir}/metrics.json", m)
    results.write_jsonl(f"{out_dir}/predictions.jsonl", rows)
    results.write_text(
        f"{out_dir}/table.md",
        f"Correctness probe ({config.probe.name}, loss {config.probe.loss.name}) on "
        f"{config.model}, layers {layers}, "
        f"last prompt token; answer accuracy {m['answer_accuracy']:.3f}.\n\n{table}",
    )
    print(
        f"probe held-out AUROC {fmt(m['val_auroc'])} accuracy {m['val_accuracy']:.3f} "
        f"(n={m['num_val']}, majority class {m['val_majority_accuracy']:.3f}); "
        f"train AUROC {fmt(m['train_auroc'])} ({m['train_steps']} steps"
        + (f", resumed from step {m['resumed_from']}" if m["resumed_from"] is not None else "")
        + ")"
    )
    print(f"probe saved: {probe_dir}; results: {out_dir}/ (metrics.json, table.md, ...)")
    print(json.dumps({k: m[k] for k in ("val_auroc", "val_accuracy", "answer_accuracy",
                                        "seconds")}))  # fmt: skip
    return m


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required (features, checkpoints, probe go there)")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    start_process(_CONFIG.value)  # multi-process: join, print on process 0 only
    run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
