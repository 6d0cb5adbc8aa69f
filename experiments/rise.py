"""RISE end to end: an SAE on reasoning-step activations, behaviour latents, steering along
decoder rows, confidence vectors.

    python -m experiments.rise --config configs/rise.py:smoke --workdir /tmp/rise

1. Traces: the model reasons greedily on the train and test prompts; each trace is split into
   steps (`sae.split_steps`) and the residual stream of `config.layer` at each step's delimiter
   token (or the step mean) is its activation. Traces, grades, steps and activations go
   through the generation store (made once per key, resumable).
2. SAE: trained on the train steps by the one training loop (`sae.fit`, resumable from
   <workdir>/sae); FVU, L0 and dead fraction on the held-out test steps, and the LM loss
   increase when the reconstruction replaces the residual stream on held-out test sequences.
3. Behaviours: keyword labels per step (`sae.label_steps`), per-latent AUROC for each
   behaviour (`sae.latent_auroc`), each live latent's dominant behaviour; spherical k-means of
   the live decoder rows and their 2-D PCA map (latent_map.png).
4. Confidence vectors: per trace, each latent's mean activation over its steps, scored by AUROC
   for the trace's answer being right (train traces; reported on test traces).
5. Steering: alpha * (unit decoder row) added at the layer at every position
   (`sae.steering`, one `lm.generate` call for the whole sweep: per-row vectors and scales);
   per (vector, alpha): behaviour counts, response length, accuracy, stated confidence (a
   confidence question appended after the response, answered under the same steering, parsed)
   and internal confidence (mean token probability, self-certainty). The alpha = 0 rows are
   checked against the unsteered traces (same tokens expected).
"""

from __future__ import annotations

import io
import os
import time

import jax
import numpy as np

from introspect import data, metrics, models, registry, results, sae, sharding, signals
from introspect import store as store_lib

ROLES = ("train", "test")


# ----------------------------------------------------------------------------- traces


def trace_records(lm, examples, config, *, role: str) -> list[dict]:
    """Per example: the greedy trace, its grade, its steps and their activations at
    config.layer; from the store when a previous run made them."""
    fmt = config.prompt_format
    delims = tuple(config.delimiters)

    def make(positions):
        exs = [examples[i] for i in positions]
        prompts = [data.build_prompt_ids(lm.tokenizer, ex, fmt) for ex in exs]
        gen = lm.generate(
            prompts,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            progress=True,
        )
        steps, acts = sae.step_activations(
            lm,
            prompts,
            gen.tokens,
            layer=int(config.layer),
            delimiter=delims,
            pool=config.pool,
            batch_size=max(1, config.batch_size // 4),
        )
        recs = []
        for i, ex in enumerate(exs):
            st = steps[i]
            recs.append(
                {
                    "prompt_ids": np.asarray(prompts[i], np.int32),
                    "trace": np.asarray(gen.tokens[i], np.int32),
                    "text": gen.texts[i],
                    "correct": bool(data.grade(ex, gen.texts[i], fmt=fmt)[1]),
                    "step_start": np.asarray([s.start for s in st], np.int64),
                    "step_end": np.asarray([s.end for s in st], np.int64),
                    "step_texts": [s.text for s in st],
                    "activations": np.asarray(acts[i], np.float32).reshape(
                        len(st), lm.config.hidden_size
                    ),
                }
            )
        return recs

    if not config.use_store:
        return make(list(range(len(examples))))
    key = {
        **store_lib.model_key(config.model, config.dtype),
        "kind": "rise-steps",
        "task": config.task,
        "prompt_format": fmt,
        "max_new_tokens": config.max_new_tokens,
        "decoding": "greedy",
        "layer": int(config.layer),
        "delimiters": list(delims),
        "pool": config.pool,
    }
    root = config.store or os.path.join(config.results_root, "store")
    entry = store_lib.GenerationStore(root).entry(key)
    split = config[f"{role}_split"][0]
    ids = [f"{split}/{ex['id']}" for ex in examples]
    recs = entry.get(ids, make, shard_size=config.store_shard_size, desc=f"rise {role}")
    print(f"{role}: {entry.counts['made']} traces made, {entry.counts['loaded']} from the store")
    return recs


def _steps_of(recs):
    """(activations [steps, d], step texts, trace index of each step)."""
    acts = np.concatenate([r["activations"] for r in recs], axis=0)
    texts = [t for r in recs for t in r["step_texts"]]
    owner = np.concatenate([np.full(len(r["step_texts"]), i, np.int64) for i, r in enumerate(recs)])
    return acts, texts, owner


# ----------------------------------------------------------------------------- analysis


def _auroc_or_none(codes, labels):
    y = np.asarray(labels, bool)
    if y.size == 0 or y.all() or not y.any():
        return None
    return sae.latent_auroc(codes, y)


def behaviour_analysis(codes_tr, labels_tr, codes_te, labels_te, live, config) -> dict:
    """Per behaviour: step rates, the top latents by train AUROC (with their test AUROC)."""
    names = list(sae.BEHAVIOURS)
    out, table = {}, np.full((len(names), codes_tr.shape[1]), np.nan)
    for j, name in enumerate(names):
        row = {
            "train_rate": float(labels_tr[:, j].mean()) if len(labels_tr) else 0.0,
            "test_rate": float(labels_te[:, j].mean()) if len(labels_te) else 0.0,
            "top_latents": [],
        }
        au = _auroc_or_none(codes_tr, labels_tr[:, j])
        if au is not None:
            au = np.where(live, au, np.nan)
            table[j] = au
            au_te = _auroc_or_none(codes_te, labels_te[:, j])
            order = np.argsort(-np.nan_to_num(au, nan=-1.0))[: int(config.top_latents)]
            row["top_latents"] = [
                {
                    "latent": int(i),
                    "train_auroc": float(au[i]),
                    "test_auroc": None if au_te is None else float(au_te[i]),
                }
                for i in order
                if np.isfinite(au[i])
            ]
        out[name] = row
    # Dominant behaviour of each live latent: the best-predicted label, if good enough.
    best = np.nanargmax(np.nan_to_num(table, nan=-1.0), axis=0)
    score = np.nan_to_num(table, nan=-1.0).max(axis=0)
    dominant = np.where(
        live & (score >= float(config.assoc_threshold)), best, -1
    )  # -1 = none / dead
    return {"behaviours": out, "dominant": dominant, "names": names}


def spherical_kmeans(rows: np.ndarray, k: int, *, seed: int, iters: int = 50) -> np.ndarray:
    """Cluster ids [n] of unit rows by cosine (k-means++ seeding, Lloyd iterations)."""
    n = rows.shape[0]
    k = max(1, min(int(k), n))
    rng = np.random.default_rng(seed)
    centres = [rows[rng.integers(n)]]
    for _ in range(1, k):
        d = 1.0 - np.max(rows @ np.stack(centres).T, axis=1)
        p = np.clip(d, 0, None)
        centres.append(rows[rng.choice(n, p=p / p.sum())] if p.sum() > 0 else rows[rng.integers(n)])
    c = np.stack(centres)
    assign = np.zeros(n, np.int64)
    for _ in range(iters):
        new = np.argmax(rows @ c.T, axis=1)
        if _ and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = rows[assign == j]
            if len(members):
                m = members.sum(0)
                c[j] = m / max(np.linalg.norm(m), 1e-12)
    return assign


def cluster_analysis(decoder, live, dominant, names, config):
    """Clusters of the live decoder rows: sizes and behaviour make-up; 2-D PCA coordinates."""
    idx = np.flatnonzero(live)
    if idx.size < 2:
        return [], idx, np.zeros((idx.size, 2)), np.zeros(idx.size, np.int64)
    rows = decoder[idx] / np.maximum(np.linalg.norm(decoder[idx], axis=1, keepdims=True), 1e-12)
    assign = spherical_kmeans(rows, config.num_clusters, seed=int(config.seed))
    centred = rows - rows.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    clusters = []
    for j in range(int(assign.max()) + 1):
        dom = dominant[idx[assign == j]]
        make_up = {names[b]: int((dom == b).sum()) for b in range(len(names)) if (dom == b).any()}
        clusters.append({"cluster": j, "size": int((assign == j).sum()), "behaviours": make_up})
    return clusters, idx, xy, assign


def confidence_vectors(recs_tr, codes_tr, own_tr, recs_te, codes_te, own_te, live, config):
    """Latents whose per-trace activation predicts a right answer (and a wrong one)."""

    def pooled(recs, codes, owner):
        keep = [i for i, r in enumerate(recs) if len(r["step_texts"])]
        z = np.zeros((len(keep), codes.shape[1]), np.float32)
        for row, i in enumerate(keep):
            c = codes[owner == i]
            z[row] = c.mean(0) if config.trace_pool == "mean" else c.max(0)
        y = np.asarray([recs[i]["correct"] for i in keep], bool)
        return z, y

    if config.trace_pool not in ("mean", "max"):
        raise ValueError(f"config.trace_pool must be 'mean' or 'max', got {config.trace_pool!r}")
    z_tr, y_tr = pooled(recs_tr, codes_tr, own_tr)
    z_te, y_te = pooled(recs_te, codes_te, own_te)
    out = {"train_accuracy": float(y_tr.mean()) if len(y_tr) else None,
           "test_accuracy": float(y_te.mean()) if len(y_te) else None}  # fmt: skip
    au = _auroc_or_none(z_tr, y_tr)
    if au is None:
        out["note"] = "the train traces are all right or all wrong: no correctness AUROC"
        return out
    au = np.where(live, au, np.nan)
    au_te = _auroc_or_none(z_te, y_te)
    filled = np.nan_to_num(au, nan=0.5)
    for name, i in (("correct", int(np.argmax(filled))), ("wrong", int(np.argmin(filled)))):
        out[name] = {
            "latent": i,
            "train_auroc": float(au[i]),
            "test_auroc": None if au_te is None else float(au_te[i]),
        }
    return out


# ----------------------------------------------------------------------------- steering


def steering_sweep(lm, params, recs_te, examples_te, vectors, unit, config) -> tuple[list, dict]:
    """Every (vector, alpha) over the steered test prompts in one generate call."""
    n = (
        len(recs_te)
        if not config.num_steer_prompts
        else min(config.num_steer_prompts, len(recs_te))
    )
    prompts = [recs_te[i]["prompt_ids"].tolist() for i in range(n)]
    alphas = [float(a) for a in config.alphas]
    settings = [("none", -1, 0.0)] + [
        (name, lat, a) for name, lat in vectors for a in alphas if a != 0.0
    ]
    latents = np.asarray([max(lat, 0) for _, lat, _ in settings for _ in range(n)], np.int64)
    scales = np.asarray([a * unit for _, _, a in settings for _ in range(n)], np.float32)
    steer = sae.steering(params, latents, scales, layer=int(config.layer))
    all_prompts = prompts * len(settings)
    print(f"steering: {len(settings)} settings x {n} prompts")
    gen = lm.generate(
        all_prompts,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        return_stats=True,
        steering=steer,
        steer_prompt=True,
        progress=True,
    )
    # Stated confidence: the question after each response (stop token dropped), same steering.
    stop_ids = set(lm.stop_and_pad(())[0].tolist())
    cue = lm.tokenizer.encode(config.confidence_text)
    follow = [
        p + [t for t in tok if t not in stop_ids] + cue
        for p, tok in zip(all_prompts, gen.tokens, strict=True)
    ]
    conf = lm.generate(
        follow,
        max_new_tokens=int(config.confidence_tokens),
        batch_size=config.batch_size,
        steering=steer,
        steer_prompt=True,
        progress=True,
    )
    stated = [signals.parse_verbalized_confidence("Confidence: " + t) for t in conf.texts]
    stats, mask = signals.from_ragged(gen.logprobs, gen.stats)
    mtp = np.asarray(signals.compute("mean_token_prob", stats, mask))
    sc = np.asarray(signals.compute("self_certainty", stats, mask, vocab_size=lm.config.vocab_size))
    rows = []
    base = gen.tokens[:n]
    for s, (name, lat, alpha) in enumerate(settings):
        sl = slice(s * n, (s + 1) * n)
        toks, texts = gen.tokens[sl], gen.texts[sl]
        steps = [
            sae.split_steps(lm.tokenizer, t, tuple(config.delimiters)) if t else [] for t in toks
        ]
        counts = np.zeros(len(sae.BEHAVIOURS))
        for st in steps:
            if st:
                counts += sae.label_steps([x.text for x in st]).sum(0)
        parsed = [c for c in stated[sl] if c is not None]
        correct = [
            bool(data.grade(ex, t, fmt=config.prompt_format)[1])
            for ex, t in zip(examples_te[:n], texts, strict=True)
        ]
        rows.append(
            {
                "vector": name,
                "latent": lat,
                "alpha": alpha,
                "alpha_raw": alpha * unit,
                "accuracy": float(np.mean(correct)),
                "length": float(np.mean([len(t) for t in toks])),
                "steps": float(np.mean([len(st) for st in steps])),
                "behaviour_counts": {
                    b: float(c / n) for b, c in zip(sae.BEHAVIOURS, counts, strict=True)
                },
                "stated_confidence": float(np.mean(parsed)) if parsed else None,
                "stated_parse_rate": len(parsed) / n,
                "mean_token_prob": float(mtp[sl].mean()),
                "self_certainty": float(sc[sl].mean()),
                "changed": float(np.mean([a != b for a, b in zip(toks, base, strict=True)])),
            }
        )
    # alpha = 0 is plain generation: its tokens should equal the unsteered traces'.
    same = [gen.tokens[i] == recs_te[i]["trace"].tolist() for i in range(n)]
    check = {"alpha0_equals_traces": float(np.mean(same)), "prompts": n}
    return rows, check


# ----------------------------------------------------------------------------- the run


def _save_params(path: str, params) -> None:
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
        for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    buf = io.BytesIO()
    np.savez(buf, **flat)
    results.write_bytes(path, buf.getvalue())


def check_config(config, lm) -> None:
    """Errors for a bad config before any generation."""
    (layer,) = lm.check_layers([int(config.layer)])
    if not 1 <= layer <= lm.config.num_layers - 1:
        raise ValueError(
            f"config.layer must be in [1, {lm.config.num_layers - 1}] (a residual stream "
            f"between blocks, where the SAE reads and steering adds), got {config.layer}"
        )
    if config.pool not in ("delimiter", "mean"):
        raise ValueError(f"config.pool must be 'delimiter' or 'mean', got {config.pool!r}")
    if config.alpha_unit not in ("norm", "raw"):
        raise ValueError(f"config.alpha_unit must be 'norm' or 'raw', got {config.alpha_unit!r}")
    unknown = [b for b in config.steer_behaviours if b not in sae.BEHAVIOURS]
    if unknown:
        raise ValueError(
            f"config.steer_behaviours: unknown {unknown}; behaviours: {list(sae.BEHAVIOURS)}"
        )
    if not all(np.isfinite(float(a)) for a in config.alphas) or not len(config.alphas):
        raise ValueError(f"config.alphas must be finite numbers, got {config.alphas}")
    sae.resolve_config(config.sae, name="config.sae")
    if config.sae.kind == "topk" and config.sae.k > config.sae.num_latents:
        raise ValueError(f"config.sae.k = {config.sae.k} > num_latents {config.sae.num_latents}")


def run(config, workdir: str) -> dict:
    t_start = time.perf_counter()
    registry.import_modules(config.get("imports"))
    if config.task not in data.TASKS:
        raise ValueError(f"unknown task {config.task!r}; registered: {data.TASKS.names()}")
    mesh = sharding.make_mesh(config.mesh) if jax.device_count() > 1 else None
    lm = models.load(config.model, dtype=config.dtype, mesh=mesh)
    check_config(config, lm)
    out_dir = results.run_dir("rise", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    roles = data.load_roles(
        config.task,
        {r: tuple(config[f"{r}_split"]) for r in ROLES},
        data_dir=config.data_dir or None,
    )
    recs = {r: trace_records(lm, roles[r], config, role=r) for r in ROLES}
    x_tr, texts_tr, own_tr = _steps_of(recs["train"])
    x_te, texts_te, own_te = _steps_of(recs["test"])
    print(f"steps: train {len(x_tr)}, test {len(x_te)} (layer {config.layer})")
    if len(x_tr) < config.sae.train.batch_size or not len(x_te):
        raise ValueError(
            f"{len(x_tr)} train steps for an SAE batch of {config.sae.train.batch_size} and "
            f"{len(x_te)} test steps: use more traces, more delimiters or a smaller batch"
        )

    params = sae.fit(x_tr, config.sae, workdir=os.path.join(workdir, "sae"), eval_x=x_te)
    m_test = sae.metrics(params, x_te, config=config.sae)
    m_train = sae.metrics(params, x_tr, config=config.sae)
    # The reconstruction replaces the stream at the step positions (where the SAE was trained).
    held = [r for r in recs["test"] if len(r["step_texts"])][: config.num_loss_sequences or None]
    loss = sae.lm_loss_increase(
        lm,
        params,
        [r["prompt_ids"].tolist() + r["trace"].tolist() for r in held],
        config=config.sae,
        layer=int(config.layer),
        positions=[len(r["prompt_ids"]) + r["step_end"] for r in held],
    )
    print(
        f"SAE: fvu {m_test['fvu']:.3f}, l0 {m_test['l0']:.1f}, dead {m_test['dead_fraction']:.2f}"
        f" (test steps); LM loss {loss['loss']:.3f} -> {loss['loss_sae']:.3f}"
    )

    codes_tr = np.asarray(sae.encode(params, x_tr, config=config.sae))
    codes_te = np.asarray(sae.encode(params, x_te, config=config.sae))
    live = (codes_tr > 0).any(0)
    labels_tr, labels_te = sae.label_steps(texts_tr), sae.label_steps(texts_te)
    beh = behaviour_analysis(codes_tr, labels_tr, codes_te, labels_te, live, config)
    clusters, idx, xy, assign = cluster_analysis(
        params["decoder"], live, beh["dominant"], beh["names"], config
    )
    conf = confidence_vectors(
        recs["train"], codes_tr, own_tr, recs["test"], codes_te, own_te, live, config
    )

    vectors = []
    for b in config.steer_behaviours:
        top = beh["behaviours"][b]["top_latents"]
        if top:
            vectors.append((f"behaviour:{b}", top[0]["latent"]))
        else:
            print(f"no {b} steps in the train traces: no {b} latent to steer")
    if config.steer_confidence and "correct" in conf:
        vectors.append(("confidence", conf["correct"]["latent"]))
    norm = float(np.linalg.norm(x_tr, axis=1).mean())
    unit = norm if config.alpha_unit == "norm" else 1.0
    steer_rows, check = steering_sweep(
        lm, params, recs["test"], roles["test"], vectors, unit, config
    )

    m = {
        "model": config.model,
        "task": config.task,
        "layer": int(config.layer),
        "num_traces": {r: len(recs[r]) for r in ROLES},
        "num_steps": {"train": len(x_tr), "test": len(x_te)},
        "activation_norm": norm,
        "fvu": m_test["fvu"],
        "l0": m_test["l0"],
        "dead_fraction": m_test["dead_fraction"],
        "explained_variance": m_test["explained_variance"],
        "train_metrics": m_train,
        "lm_loss": loss,
        "behaviours": beh["behaviours"],
        "dominant_counts": {
            name: int((beh["dominant"] == j).sum()) for j, name in enumerate(beh["names"])
        },
        "live_latents": int(live.sum()),
        "clusters": clusters,
        "confidence_vectors": conf,
        "steering": steer_rows,
        "steering_check": check,
        "seconds": 0.0,
    }
    title = f"SAE decoder rows, layer {config.layer} ({len(idx)} live latents)"
    plot_latent_map(
        xy, beh["dominant"][idx], assign, beh["names"], f"{out_dir}/latent_map.png", title=title
    )
    plot_steering(steer_rows, f"{out_dir}/steering.png")
    _save_params(f"{out_dir}/sae_params.npz", params)
    m["seconds"] = round(time.perf_counter() - t_start, 1)
    table = render_table(m)
    results.write_json(f"{out_dir}/metrics.json", m)
    results.write_text(f"{out_dir}/table.md", table)
    print(table)
    print(f"results: {out_dir}/ ({m['seconds']:.0f} s)")
    return m


# ----------------------------------------------------------------------------- reporting


def _f(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_table(m) -> str:
    lines = [
        f"# RISE: {m['model']} on {m['task']}, layer {m['layer']}",
        "",
        f"Steps: {m['num_steps']['train']} train, {m['num_steps']['test']} test. SAE on test "
        f"steps: FVU {m['fvu']:.3f}, L0 {m['l0']:.1f}, dead fraction {m['dead_fraction']:.2f} "
        f"({m['live_latents']} latents live on train steps). LM loss on held-out test traces "
        f"{m['lm_loss']['loss']:.3f} -> {m['lm_loss']['loss_sae']:.3f} nats/token with the "
        f"reconstruction in the residual stream at the step positions "
        f"({m['lm_loss']['increase']:+.3f}).",
        "",
        "| behaviour | train steps | test steps | top latent | train AUROC | test AUROC | "
        "dominant in latents |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, b in m["behaviours"].items():
        top = b["top_latents"][0] if b["top_latents"] else None
        lines.append(
            f"| {name} | {b['train_rate']:.1%} | {b['test_rate']:.1%} | "
            f"{top['latent'] if top else '-'} | {_f(top and top['train_auroc'])} | "
            f"{_f(top and top['test_auroc'])} | {m['dominant_counts'][name]} |"
        )
    conf = m["confidence_vectors"]
    lines += ["", "Confidence vectors (per-trace activation vs a right answer):"]
    for key in ("correct", "wrong"):
        if key in conf:
            c = conf[key]
            lines.append(
                f"- predicts {key}: latent {c['latent']}, train AUROC {c['train_auroc']:.3f}, "
                f"test AUROC {_f(c['test_auroc'])}"
            )
    if "note" in conf:
        lines.append(f"- {conf['note']}")
    lines += [
        "",
        "| vector | latent | alpha | accuracy | length | steps | stated conf. (parsed) | "
        "mean token prob | self-certainty | changed | behaviour counts / response |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in m["steering"]:
        counts = ", ".join(f"{k} {v:.2f}" for k, v in r["behaviour_counts"].items() if v)
        lines.append(
            f"| {r['vector']} | {r['latent'] if r['latent'] >= 0 else '-'} | {r['alpha']:+.2f} | "
            f"{r['accuracy']:.3f} | {r['length']:.1f} | {r['steps']:.1f} | "
            f"{_f(r['stated_confidence'])} ({r['stated_parse_rate']:.0%}) | "
            f"{r['mean_token_prob']:.3f} | {r['self_certainty']:.2f} | {r['changed']:.0%} | "
            f"{counts or '-'} |"
        )
    ck = m["steering_check"]
    lines += [
        "",
        f"alpha in units of the mean step-activation norm ({m['activation_norm']:.1f}); alpha = 0 "
        f"responses equal the unsteered traces on {ck['alpha0_equals_traces']:.0%} of "
        f"{ck['prompts']} prompts. Runtime {m['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    metrics.save_png(fig, path, dpi=120)
    _pyplot().close(fig)


def plot_latent_map(xy, dominant, assign, names, path, *, title) -> None:
    """Live decoder rows in 2-D (PCA), coloured by dominant behaviour; cluster ids at centroids."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    none = dominant < 0
    ax.scatter(xy[none, 0], xy[none, 1], s=6, c="lightgrey", label="none")
    cmap = plt.get_cmap("tab10")
    for j, name in enumerate(names):
        sel = dominant == j
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(j), label=f"{name} ({sel.sum()})")
    for c in range(int(assign.max()) + 1 if len(assign) else 0):
        centre = xy[assign == c].mean(0)
        ax.annotate(str(c), centre, fontsize=9, weight="bold", ha="center")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=1.5)
    fig.tight_layout()
    _save(fig, path)


def plot_steering(rows, path) -> None:
    """Length, accuracy, stated and internal confidence vs alpha, one line per vector."""
    plt = _pyplot()
    keys = [("length", "response tokens"), ("accuracy", "accuracy"),
            ("stated_confidence", "stated confidence"), ("mean_token_prob", "mean token prob"),
            ("self_certainty", "self-certainty")]  # fmt: skip
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
    base = next(r for r in rows if r["vector"] == "none")
    for name in dict.fromkeys(r["vector"] for r in rows if r["vector"] != "none"):
        sel = sorted([base] + [r for r in rows if r["vector"] == name], key=lambda r: r["alpha"])
        for ax, (k, label) in zip(axes, keys, strict=True):
            y = [np.nan if r[k] is None else r[k] for r in sel]
            ax.plot([r["alpha"] for r in sel], y, "o-", label=name)
            ax.set_xlabel("alpha")
            ax.set_ylabel(label)
    if len(rows) > 1:
        axes[0].legend(fontsize=7)
    fig.suptitle("Steering along SAE decoder rows")
    fig.tight_layout()
    _save(fig, path)


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "rise", workdir_help="the SAE's training checkpoints")
