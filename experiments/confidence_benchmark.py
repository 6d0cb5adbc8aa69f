"""The confidence benchmark: generate once, score every answer with every signal, measure.

    python -m experiments.confidence_benchmark --config configs/confidence_benchmark.py:smoke

For the calibration and test questions the model answers once greedily (per-step statistics from
the compiled loop give every logit-based signal), draws `num_samples` extra samples per test
question (sampling-consistency signals, and Best-of-N), and is asked P(True) about its answer.
Each signal is scored on the test split (AUROC, AUPRC, AURC, PRR; ECE and Brier raw when the
signal is a probability, and after temperature / isotonic calibration fitted on the calibration
split). Paper tables reproduced in form: Best-of-N accuracy vs N; greedy vs nucleus vs CNTP;
black-box elicitation (verbalized vs consistency vs hybrid).
Writes results/confidence_benchmark/<run>/: config.json, metrics.json, table.md, answers.jsonl,
reliability.png, risk_coverage.png.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import time

import numpy as np
from absl import logging

from introspect import calibrators, data, decoding, metrics, models, probes, results, signals
from introspect import store as store_lib

# ---------------------------------------------------------------------------------------------
# Data and answers
# ---------------------------------------------------------------------------------------------


def load_examples(config, split: str, num: int) -> list[dict]:
    """`num` examples of one split of the configured task (introspect.data.load_task)."""
    return data.load_task(config.task, split, num=num, data_dir=config.data_dir or None)


def equivalent(answer_type: str):
    """Answer equivalence for clustering samples: the task's own grader, gold = the other."""
    if answer_type == "math":
        return lambda a, b: data.grade_boxed("\\boxed{" + a + "}", b)[1]
    grader = data.grader_for(answer_type)
    return lambda a, b: grader(a, b)[1]


def answer_span_mask(tokenizer, tokens: list[int], answer: str | None) -> np.ndarray:
    """[len(tokens)] bool: the tokens that spell the last occurrence of `answer` in the text
    (CRew's answer tokens); all tokens when the answer is not found."""
    mask = np.zeros(len(tokens), bool)
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if not answer or answer not in text:
        mask[:] = True
        return mask
    start = text.rfind(answer)
    end = start + len(answer)
    for i in range(len(tokens)):  # token i covers chars [len(prefix_i), len(prefix_i+1))
        lo = len(tokenizer.decode(tokens[:i], skip_special_tokens=True))
        hi = len(tokenizer.decode(tokens[: i + 1], skip_special_tokens=True))
        mask[i] = lo < end and hi > start
    return mask if mask.any() else np.ones(len(tokens), bool)


# ---------------------------------------------------------------------------------------------
# Scoring one signal
# ---------------------------------------------------------------------------------------------


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def evaluate_signal(name, cal_scores, cal_correct, test_scores, test_correct, num_bins) -> dict:
    """Ranking metrics on test; calibration raw (probability signals) and after calibrators
    fitted on the calibration split. Temperature scaling acts on logit(p) for probability
    signals; unbounded signals get Platt scaling (a * s + b) in its place."""
    t_s, t_y = np.asarray(test_scores, np.float64), np.asarray(test_correct, np.float64)
    c_s = None if cal_scores is None else np.asarray(cal_scores, np.float64)
    c_y = np.asarray(cal_correct, np.float64)
    both = 0 < t_y.sum() < len(t_y)
    row = {
        "auroc": float(metrics.auroc(t_s, t_y)) if both else None,
        "auprc": float(metrics.auprc(t_s, t_y)) if both else None,
        "aurc": float(metrics.aurc(t_s, t_y)),
        "prr": float(metrics.prr(t_s, t_y)) if both else None,
    }
    # Signals that are already probabilities in [0, 1]: their raw ECE/Brier are meaningful.
    is_prob = bool(signals.SIGNALS.meta(name, "prob"))
    row["ece_raw"] = float(metrics.ece(t_s, t_y, num_bins=num_bins)) if is_prob else None
    row["brier_raw"] = float(metrics.brier_score(t_s, t_y)) if is_prob else None
    cal_ok = c_s is not None and 0 < c_y.sum() < len(c_y)
    if cal_ok:
        if is_prob:
            tp = calibrators.temperature.fit(_logit(c_s), c_y)
            p_temp = np.asarray(calibrators.temperature.apply(tp, _logit(t_s)))
        else:
            pp = calibrators.platt.fit(c_s, c_y)
            p_temp = np.asarray(calibrators.platt.apply(pp, t_s))
        ip = calibrators.isotonic.fit(c_s, c_y)
        p_iso = np.clip(np.asarray(calibrators.isotonic.apply(ip, t_s)), 0.0, 1.0)
        row["ece_temp"] = float(metrics.ece(p_temp, t_y, num_bins=num_bins))
        row["ece_iso"] = float(metrics.ece(p_iso, t_y, num_bins=num_bins))
        row["brier_iso"] = float(metrics.brier_score(p_iso, t_y))
        row["_p_iso"] = p_iso
    else:
        row.update(ece_temp=None, ece_iso=None, brier_iso=None, _p_iso=None)
    return row


def _fmt(x, digits=3):
    return "–" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def model_key(config) -> dict:
    """The model part of the store key (`introspect.store.model_key`)."""
    return store_lib.model_key(config.model, config.dtype)


def split_records(lm, examples, config, *, split: str, num_samples: int, seed: int, imported):
    """(records, counts): the generation records of one split (see `introspect.store`), from
    the store when a previous run with the same key made them, else made now (and stored);
    counts = {"loaded", "made", "remade_shards"} examples/shards of this call.

    A record holds the greedy answer (tokens, log-probs, per-step statistics, text), its
    grade, P(True), `num_samples` sampled answers with their self-certainty, and, with
    `config.store_hidden_layers`, the hidden states the first answer token was computed from.
    With `imported` ({(task, split, id): row}, `introspect.store.read_generations`) the answers
    are the outside responses, scored teacher-forced instead of generated.
    """
    fmt, task = config.prompt_format, config.task
    layers = tuple(int(x) for x in config.store_hidden_layers)
    key = {
        **model_key(config),
        "task": task,
        "split": split,
        "prompt_format": fmt,
        "max_new_tokens": config.max_new_tokens,
        "decoding": "greedy",
        "num_samples": num_samples,
        "sample_temperature": config.sample_temperature if num_samples else None,
        "sample_top_p": config.sample_top_p if num_samples else None,
        "seed": seed if num_samples else None,
        "hidden_layers": list(layers),
        # the per-step statistics stored with each answer (a new one regenerates the entry)
        "stat_names": list(signals.STAT_NAMES),
        "p_true": hashlib.sha256(signals.P_TRUE_TEMPLATE.encode()).hexdigest()[:16],
        "imported": config.import_generations and _file_digest(config.import_generations),
        # what each sample keeps (sequence log-likelihoods: semantic entropy, SAR)
        "sample_fields": ["self_certainty", "logprob"] if num_samples else None,
    }

    def make(positions):
        exs = [examples[i] for i in positions]
        ids = [data.build_prompt_ids(lm.tokenizer, ex, fmt) for ex in exs]
        if imported is not None:
            rows = [_imported_row(imported, task, split, ex["id"]) for ex in exs]
            recs = store_lib.scored_records(
                lm,
                ids,
                [r["response"] for r in rows],
                [r.get("finish_reason", "stop") for r in rows],
                batch_size=config.batch_size,
                progress=True,
            )
        else:
            gen = lm.generate(
                ids,
                max_new_tokens=config.max_new_tokens,
                return_stats=True,
                hidden_layers=layers or None,
                hidden_steps=(0,) if layers else None,
                batch_size=config.batch_size,
                progress=True,
            )
            recs = store_lib.generation_records(gen, ids)
            for i, r in enumerate(recs):
                if layers:
                    r["hidden"] = np.asarray(gen.hidden_states[:, i, 0], np.float32)
        p_true = signals.p_true(lm, [ex["question"] for ex in exs], [r["text"] for r in recs])
        for ex, r, p in zip(exs, recs, p_true, strict=True):
            r["p_true"] = float(p)
            extracted, correct = data.grade(ex, r["text"], fmt=fmt)
            r["extracted"], r["correct"] = extracted, bool(correct)
        if num_samples:
            samples = decoding.best_of_n.sample(
                lm,
                ids,
                n=num_samples,
                max_new_tokens=config.max_new_tokens,
                temperature=config.sample_temperature,
                top_p=config.sample_top_p,
                seed=seed + positions[0],
                batch_size=config.batch_size,
                progress=True,
            )
            for i, r in enumerate(recs):
                r["sample_texts"] = list(samples.texts[i])
                r["sample_self_certainty"] = np.asarray(
                    samples.signals["self_certainty"][i], np.float32
                )
                # sequence log-likelihood = mean token log-prob x number of tokens
                lengths = np.array([len(t) for t in samples.tokens[i]], np.float32)
                r["sample_logprob"] = np.asarray(
                    samples.signals["mean_logprob"][i] * lengths, np.float32
                )
        return recs

    if not config.use_store:
        return make(list(range(len(examples)))), {
            "loaded": 0,
            "made": len(examples),
            "remade_shards": 0,
        }
    root = config.store or os.path.join(config.results_root, "store")
    entry = store_lib.GenerationStore(root).entry(key)
    recs = entry.get(
        [ex["id"] for ex in examples],
        make,
        shard_size=config.store_shard_size,
        desc=f"{task}/{split}",
    )
    logging.info("store %s/%s: %s", task, split, entry.counts)
    return recs, dict(entry.counts)


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _imported_row(imported, task, split, example_id):
    for k in ((task, split, example_id), ("", "", example_id)):
        if k in imported:
            return imported[k]
    raise ValueError(
        f"import_generations has no response for task {task!r}, split {split!r}, id "
        f"{example_id!r}; each line needs the example's id (and task/split, or neither)"
    )


def score_split(lm, examples, config, *, split: str, with_samples: bool, seed: int, imported):
    """Records of one split (stored or made), graded, with every signal computed."""
    fmt = config.prompt_format
    num_samples = config.num_samples if with_samples else 0
    recs, counts = split_records(
        lm, examples, config, split=split, num_samples=num_samples, seed=seed, imported=imported
    )
    texts = [r["text"] for r in recs]
    # Graded again from the text (cheap), so a grader fix never needs new generations.
    graded = [data.grade(ex, t, fmt=fmt) for ex, t in zip(examples, texts, strict=True)]
    extracted = [g[0] for g in graded]
    correct = np.array([g[1] for g in graded], np.float64)
    stats, mask = store_lib.logit_inputs(recs)
    span = np.zeros_like(mask)
    for i, (r, ans) in enumerate(zip(recs, extracted, strict=True)):
        span[i, : len(r["tokens"])] = answer_span_mask(lm.tokenizer, r["tokens"].tolist(), ans)
    same = equivalent(examples[0]["answer_type"]) if examples else None
    fields = {
        "stats": stats,
        "mask": mask,
        "vocab_size": lm.config.vocab_size,
        "answer_mask": span,
        "texts": texts,
        "answers": extracted,
        "equivalent": same,
    }
    if "hidden" in recs[0]:
        # the hidden states the first answer token was computed from (SEP's TBG position)
        fields["features"] = np.stack([r["hidden"].reshape(-1) for r in recs])
    out = {
        "ids": [r["prompt_ids"].tolist() for r in recs],
        "texts": texts,
        "extracted": extracted,
        "correct": correct,
        "store": counts,
    }
    if examples and examples[0]["answer_type"] == "text":
        # Closed-book QA is also reported in SQuAD terms, on the graded answer (first line).
        pairs = [(data.golds(ex), a or "") for ex, a in zip(examples, extracted, strict=True)]
        out["em"] = np.array([data.exact_match(a, g) for g, a in pairs])
        out["f1"] = np.array([data.f1_score(a, g) for g, a in pairs])
    if num_samples:
        answers = [
            [data.grade(ex, t, fmt=fmt)[0] for t in r["sample_texts"]]
            for ex, r in zip(examples, recs, strict=True)
        ]
        sample_texts = [list(r["sample_texts"]) for r in recs]
        # Similarity of the samples for the graph estimators (EigValLaplacian, DegMat,
        # Eccentricity, KLE, SAR, CoCoA): LM-Polygraph's Jaccard option (no NLI model here);
        # the greedy answer's similarity to each sample from the same matrix.
        joint = signals.semantic.jaccard_similarity(
            [[t, *row] for t, row in zip(texts, sample_texts, strict=True)]
        )
        fields.update(
            sample_answers=answers,
            sample_texts=sample_texts,
            classes=signals.sample_classes(answers, same),
            sample_logprobs=np.stack([r["sample_logprob"] for r in recs]),
            similarity=joint[:, 1:, 1:],
            greedy_similarity=joint[:, 0, 1:],
        )
        out["sample_self_certainty"] = np.stack([r["sample_self_certainty"] for r in recs])
        out["sample_answers"] = answers
    out["inputs"] = signals.Inputs(**fields)
    # Every estimator the inputs allow (signals.estimate), plus P(True) from the store.
    out["values"] = {
        **signals.estimate(out["inputs"]),
        "p_true": np.array([r["p_true"] for r in recs]),
    }
    return out


def hidden_state_signals(cal, test, out_dir: str) -> dict:
    """Test-split values of the estimators fitted on the calibration split's hidden states
    (`config.store_hidden_layers`): Mahalanobis, RDE and HUQ (density of the calibration
    features), and a semantic-entropy probe trained on the calibration split's semantic
    entropies (when it has samples). {} without stored hidden states."""
    cal_in, test_in = cal["inputs"], test["inputs"]
    if cal_in.features is None or test_in.features is None:
        return {}
    density, names = {}, []
    n, d = np.shape(cal_in.features)
    # Fewer calibration rows than dimensions: the Ledoit-Wolf shrinkage covariance.
    options = {"mahalanobis": {"shrinkage": "empirical" if n > d else "ledoit_wolf"}}
    for name in ("mahalanobis", "rde"):
        try:
            density.update(signals.fit_density(cal_in.features, names=(name,), options=options))
        except ValueError as e:  # e.g. too few calibration rows for RDE's kernel PCA
            logging.warning("%s not fitted on the calibration features: %s", name, e)
        else:
            names += [name] + (["huq"] if name == "mahalanobis" else [])
    inputs = dataclasses.replace(test_in, density=density)
    if cal_in.classes is not None:
        se = -np.asarray(signals.estimate(cal_in, names=("semantic_entropy",))["semantic_entropy"])
        if np.ptp(se) > 0:
            try:
                fit = probes.fit_sep(
                    cal_in.features, se, workdir=os.path.join(out_dir, "sep_probe")
                )
            except ValueError as e:  # e.g. the split binarises to one class
                logging.warning("semantic-entropy probe not trained: %s", e)
            else:
                inputs = dataclasses.replace(inputs, sep=fit)
                names.append("sep")
    return signals.estimate(inputs, names=names)


def best_of_n_table(examples, test, config) -> list[dict]:
    """Accuracy vs N for greedy, majority, self-certainty and Borda(p) over the sample pool."""
    rows = []
    answers, sc = test["sample_answers"], test["sample_self_certainty"]
    golds = examples
    greedy_acc = float(test["correct"].mean())

    def acc(chosen):
        return float(
            np.mean(
                [
                    a is not None and equivalent(ex["answer_type"])(a, ex["answer"])
                    for ex, a in zip(golds, chosen, strict=True)
                ]
            )
        )

    for n in [n for n in config.best_of_n if n <= config.num_samples]:
        sub = [row[:n] for row in answers]
        row = {
            "N": n,
            "greedy": greedy_acc,
            "majority": acc(decoding.best_of_n.choose(sub, method="majority")),
            "self_certainty": acc(decoding.best_of_n.choose(sub, sc[:, :n], method="score")),
        }
        for p in config.borda_powers:
            row[f"borda_p{p}"] = acc(
                decoding.best_of_n.choose(sub, sc[:, :n], method="borda", power=p)
            )
        rows.append(row)
    return rows


def task_config(config, task: str):
    """The config of one task: a copy of `config` with `task` set and its `task_overrides`
    applied (e.g. a longer max_new_tokens for GSM8K)."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.task = task
    overrides = dict(config.task_overrides).get(task, {})
    for k, v in dict(overrides).items():
        if k not in c or k in ("tasks", "task_overrides"):
            raise ValueError(f"task_overrides[{task!r}]: {k!r} is not a per-task config field")
        c[k] = v
    return c


def run_task(lm, config, out_dir: str, imported) -> dict:
    """The whole benchmark on one task: calibration and test splits scored, every table."""
    t0 = time.perf_counter()
    cal_ex = load_examples(config, config.calibration_split, config.num_calibration)
    test_ex = load_examples(config, config.test_split, config.num_test)
    cal = score_split(
        lm,
        cal_ex,
        config,
        split=config.calibration_split,
        with_samples=config.samples_on_calibration,
        seed=config.seed,
        imported=imported,
    )
    test = score_split(
        lm,
        test_ex,
        config,
        split=config.test_split,
        with_samples=True,
        seed=config.seed + 1_000_003,
        imported=imported,
    )

    os.makedirs(out_dir, exist_ok=True)
    test["values"].update(hidden_state_signals(cal, test, out_dir))
    table = {}
    for name, t_scores in test["values"].items():
        # Signals missing on the calibration split (sample-based ones when the config samples
        # the test split only) get ranking metrics and raw calibration, never a fit on test.
        table[name] = evaluate_signal(
            name,
            cal["values"].get(name),
            cal["correct"],
            t_scores,
            test["correct"],
            config.num_bins,
        )
        table[name].update(auroc_ci(t_scores, test["correct"], config))

    # Plots: reliability of the best-AUROC signal after isotonic calibration; risk-coverage.
    ranked = sorted((r["auroc"] or 0.0, n) for n, r in table.items())
    best = ranked[-1][1] if ranked else None
    if best is not None and table[best]["_p_iso"] is not None:
        metrics.plot_reliability_diagram(
            table[best]["_p_iso"],
            test["correct"],
            num_bins=config.num_bins,
            title=f"{config.task}: {best} (isotonic), test split",
            path=f"{out_dir}/reliability.png",
        )
    if best is not None:
        metrics.plot_risk_coverage(
            test["values"][best],
            test["correct"],
            title=f"{config.task} risk-coverage: {best}",
            path=f"{out_dir}/risk_coverage.png",
        )

    bon = best_of_n_table(test_ex, test, config) if "sample_answers" in test else []
    blackbox = blackbox_table(lm, test_ex, test, config)
    cascade = cascade_table(test_ex, cal, test, config)
    cntp_rows = cntp_table(lm, test_ex, test, config)
    for r in table.values():
        r.pop("_p_iso", None)
    summary = {
        "model": config.model,
        "task": config.task,
        "splits": [config.calibration_split, config.test_split],
        "num_calibration": len(cal_ex),
        "num_test": len(test_ex),
        "accuracy_test": float(test["correct"].mean()),
        "accuracy_calibration": float(cal["correct"].mean()),
        **(
            {"em_test": float(test["em"].mean()), "f1_test": float(test["f1"].mean())}
            if "em" in test
            else {}
        ),
        "signals": table,
        "best_of_n": bon,
        "cntp": cntp_rows,
        "blackbox": blackbox,
        "cascade": cascade,
        "store": {
            f"{config.task}/{config.calibration_split}": cal["store"],
            f"{config.task}/{config.test_split}": test["store"],
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    rows = [
        {
            **ex,
            "split": config.test_split,
            "response": test["texts"][i],
            "extracted": test["extracted"][i],
            "correct": bool(test["correct"][i]),
            "signals": {k: float(v[i]) for k, v in test["values"].items()},
        }
        for i, ex in enumerate(test_ex)
    ]
    results.write_jsonl(f"{out_dir}/answers.jsonl", rows)
    results.write_json(f"{out_dir}/metrics.json", summary)
    results.write_text(f"{out_dir}/table.md", render_table(summary))
    return summary


def auroc_ci(scores, correct, config) -> dict:
    """Percentile-bootstrap interval of the test AUROC (`config.bootstrap_resamples`
    resamples of the test questions; None when the split has one class only)."""
    y = np.asarray(correct, np.float64)
    if not config.bootstrap_resamples or not 0 < y.sum() < len(y):
        return {"auroc_lo": None, "auroc_hi": None}
    ci = metrics.bootstrap_ci(
        metrics.auroc,
        np.asarray(scores, np.float32),
        y.astype(np.float32),
        num_resamples=config.bootstrap_resamples,
        seed=config.seed,
    )
    return {"auroc_lo": float(ci.low), "auroc_hi": float(ci.high)}


def run(config) -> dict:
    """Every task of `config.tasks` (or `config.task`); per-task and cross-task tables."""
    out_dir = results.run_dir(
        "confidence_benchmark", config.run_name or None, root=config.results_root
    )
    results.write_json(f"{out_dir}/config.json", config.to_dict())
    t0 = time.perf_counter()
    tasks = tuple(config.tasks) or (config.task,)
    unknown = [t for t in tasks if t not in data.TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; registered: {', '.join(data.TASKS.names())}")
    for t in config.task_overrides:
        if t not in tasks:
            raise ValueError(f"task_overrides names {t!r}, which is not among the tasks {tasks}")
    imported = (
        store_lib.read_generations(config.import_generations) if config.import_generations else None
    )
    lm = models.load(config.model, dtype=config.dtype)
    per_task = {}
    for task in tasks:
        tc = task_config(config, task)
        sub = out_dir if len(tasks) == 1 else os.path.join(out_dir, task)
        per_task[task] = run_task(lm, tc, sub, imported)
        print(render_table(per_task[task]))
    counts = {k: v for s in per_task.values() for k, v in s["store"].items()}
    summary = {
        "model": config.model,
        "tasks": per_task,
        "store": counts,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    md = "\n".join(render_table(s) for s in per_task.values())
    if len(tasks) > 1:
        cross = render_cross_task(per_task)
        md = cross + "\n" + md
        print(cross)
        plot_auroc_grid(per_task, f"{out_dir}/auroc.png")
    results.write_json(f"{out_dir}/metrics.json", summary)
    results.write_text(f"{out_dir}/table.md", md)
    made = sum(c["made"] for c in counts.values())
    loaded = sum(c["loaded"] for c in counts.values())
    print(f"generations: {made} made, {loaded} read from the store; {summary['seconds']:.0f} s")
    print(f"results: {out_dir}/")
    return summary


def _common_signals(per_task: dict) -> list[str]:
    """The signals every task has, sorted by name."""
    return sorted(set.intersection(*(set(s["signals"]) for s in per_task.values())))


def _auroc_cell(row: dict) -> str:
    """AUROC with its bootstrap interval when there is one: "0.612 [0.55, 0.67]"."""
    if row.get("auroc_lo") is None:
        return _fmt(row["auroc"])
    return f"{_fmt(row['auroc'])} [{row['auroc_lo']:.2f}, {row['auroc_hi']:.2f}]"


def render_cross_task(per_task: dict) -> str:
    """Signal x task tables of test AUROC (with its bootstrap interval) and PRR, and a mean
    column; rows sorted by mean AUROC."""
    tasks = list(per_task)
    names = _common_signals(per_task)

    def mean(name, key):
        vals = [per_task[t]["signals"][name][key] for t in tasks]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    names.sort(key=lambda n: -(mean(n, "auroc") or 0))
    acc = " | ".join(
        f"{t} {per_task[t]['accuracy_test']:.3f} (n={per_task[t]['num_test']})" for t in tasks
    )
    lines = [
        f"# Confidence benchmark: {next(iter(per_task.values()))['model']}, {len(tasks)} tasks",
        "",
        f"Test accuracy: {acc}.",
    ]
    sections = [
        ("AUROC by task (test split; 95% bootstrap interval)", "auroc", _auroc_cell),
        ("PRR by task (test split)", "prr", lambda r: _fmt(r["prr"])),
    ]
    for title, key, cell in sections:
        lines += [
            "",
            f"## {title}",
            "",
            "| signal | " + " | ".join(tasks) + " | mean |",
            "|---|" + "---|" * (len(tasks) + 1),
        ]
        for n in names:
            cells = [cell(per_task[t]["signals"][n]) for t in tasks]
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {_fmt(mean(n, key))} |")
    return "\n".join(lines) + "\n"


def plot_auroc_grid(per_task: dict, path: str) -> None:
    """A signal x task heat map of test AUROC (0.5 = chance, white)."""
    tasks = list(per_task)
    names = _common_signals(per_task)
    grid = np.array(
        [
            [np.nan if (v := per_task[t]["signals"][n]["auroc"]) is None else v for t in tasks]
            for n in names
        ]
    )
    order = np.argsort(-np.nanmean(np.where(np.isnan(grid), 0.5, grid), axis=1))
    metrics.plot_heatmap(
        grid[order],
        row_labels=[names[i] for i in order],
        col_labels=tasks,
        title="AUROC by signal and task (test split)",
        center=0.5,
        path=path,
    )


def blackbox_table(lm, examples, test, config) -> list[dict]:
    """Black-box elicitation (Xiong et al.): verbalized confidence of answers given under a
    verbalized-confidence prompt, sampling consistency of the greedy answers, and their hybrid
    (mean of the verbalized confidence and the consistency of the verbalized answer with the
    sample pool). Each row: AUROC and ECE against the correctness of the answers it rates."""
    if not config.blackbox or "sample_answers" not in test:
        return []
    ids = [data.build_prompt_ids(lm.tokenizer, ex, "verbalized") for ex in examples]
    gen = lm.generate(
        ids,
        max_new_tokens=config.verbalized_max_new_tokens,
        batch_size=config.batch_size,
        progress=True,
    )
    parsed = [signals.parse_verbalized_confidence(t) for t in gen.texts]
    graded = [
        data.grade(ex, t, fmt="verbalized") for ex, t in zip(examples, gen.texts, strict=True)
    ]
    v_correct = np.array([g[1] for g in graded], np.float64)
    verbal = np.array([np.nan if p is None else p for p in parsed])
    same = equivalent(examples[0]["answer_type"])
    consist_v = np.array(
        [
            signals.consistency(g[0], row, equivalent=same)
            for g, row in zip(graded, test["sample_answers"], strict=True)
        ]
    )
    rows = []

    def row(method, scores, correct, note=""):
        ok = np.isfinite(scores)
        both = ok.sum() > 1 and 0 < correct[ok].sum() < ok.sum()
        rows.append(
            {
                "method": method,
                "parsed": float(ok.mean()),
                "accuracy": float(correct.mean()),
                "auroc": float(metrics.auroc(scores[ok], correct[ok])) if both else None,
                "ece": float(metrics.ece(scores[ok], correct[ok], num_bins=config.num_bins))
                if ok.any()
                else None,
                "note": note,
            }
        )

    row("verbalized", verbal, v_correct, "answers under the verbalized prompt")
    row("consistency", test["values"]["consistency"], test["correct"], "greedy answers")
    hybrid = np.where(np.isfinite(verbal), 0.5 * (verbal + consist_v), consist_v)
    row("hybrid", hybrid, v_correct, "verbalized answers; unparsed -> consistency")
    return rows


def cascade_table(examples, cal, test, config) -> list[dict]:
    """Selective answering and a cascade: the small model answers when its confidence (signal
    `cascade_signal`) reaches a threshold set on the calibration split for a target coverage;
    otherwise it abstains, or defers to `cascade_model` when one is configured."""
    name = config.cascade_signal
    if not config.cascade_coverages or name not in cal["values"]:
        return []
    large = None
    if config.cascade_model:
        big = models.load(config.cascade_model, dtype=config.dtype)
        ids = [data.build_prompt_ids(big.tokenizer, ex, config.prompt_format) for ex in examples]
        gen = big.generate(
            ids, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, progress=True
        )
        large = np.array(
            [
                data.grade(ex, t, fmt=config.prompt_format)[1]
                for ex, t in zip(examples, gen.texts, strict=True)
            ],
            np.float64,
        )
    rows = []
    for coverage in config.cascade_coverages:
        threshold = float(np.quantile(cal["values"][name], 1.0 - coverage))
        keep = decoding.selective_answer(test["values"][name], threshold=threshold)
        row = {
            "target_coverage": coverage,
            "threshold": threshold,
            "coverage": float(keep.mean()),
            "selective_accuracy": float(test["correct"][keep].mean()) if keep.any() else None,
        }
        if large is not None:
            row["cascade_accuracy"] = float(np.where(keep, test["correct"], large).mean())
        rows.append(row)
    return rows


def cntp_table(lm, examples, test, config) -> list[dict]:
    """Accuracy of greedy, nucleus sampling and CNTP on the test questions."""
    if not config.cntp_trials:
        return []
    ids = test["ids"]
    kw = dict(max_new_tokens=config.max_new_tokens, seed=config.seed)
    nucleus = lm.generate(
        ids,
        temperature=config.sample_temperature,
        top_p=config.sample_top_p,
        batch_size=config.batch_size,
        **kw,
    )
    cautious = decoding.cntp.generate(
        lm,
        ids,
        temperature=config.sample_temperature,
        top_p=config.sample_top_p,
        max_trials=config.cntp_trials,
        batch_size=max(1, config.batch_size // config.cntp_trials),
        **kw,
    )

    def acc(texts):
        return float(
            np.mean(
                [
                    data.grade(ex, t, fmt=config.prompt_format)[1]
                    for ex, t in zip(examples, texts, strict=True)
                ]
            )
        )

    return [
        {"method": "greedy", "accuracy": float(test["correct"].mean())},
        {
            "method": f"nucleus (T={config.sample_temperature}, p={config.sample_top_p})",
            "accuracy": acc(nucleus.texts),
        },
        {"method": f"CNTP (N_max={config.cntp_trials})", "accuracy": acc(cautious.texts)},
    ]


COLUMNS = [
    ("auroc", "AUROC"),
    ("auprc", "AUPRC"),
    ("ece_raw", "ECE raw"),
    ("ece_temp", "ECE temp"),
    ("ece_iso", "ECE iso"),
    ("brier_raw", "Brier raw"),
    ("brier_iso", "Brier iso"),
    ("aurc", "AURC"),
    ("prr", "PRR"),
]


def render_table(summary) -> str:
    lines = [
        f"# Confidence benchmark: {summary['model']} on {summary['task']}",
        "",
        f"Test accuracy {summary['accuracy_test']:.3f} (split {summary['splits'][1]!r}, "
        f"n = {summary['num_test']}); calibration split {summary['splits'][0]!r}, "
        f"n = {summary['num_calibration']}."
        + (
            f" SQuAD exact match {summary['em_test']:.3f}, token F1 {summary['f1_test']:.3f}"
            " (the graded answer is the first line; accuracy counts an alias anywhere in it)."
            if "em_test" in summary
            else ""
        )
        + " AUROC with its 95% bootstrap interval.",
        "",
        "| signal | " + " | ".join(c for _, c in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    order = sorted(summary["signals"], key=lambda n: -(summary["signals"][n]["auroc"] or 0))
    for name in order:
        r = summary["signals"][name]
        cells = [_auroc_cell(r) if k == "auroc" else _fmt(r[k]) for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary["best_of_n"]:
        keys = [k for k in summary["best_of_n"][0] if k != "N"]
        lines += [
            "",
            "## Best-of-N accuracy",
            "",
            "| N | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for r in summary["best_of_n"]:
            lines.append(f"| {r['N']} | " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    if summary.get("blackbox"):
        lines += [
            "",
            "## Black-box elicitation",
            "",
            "| method | parsed | accuracy | AUROC | ECE | answers rated |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['method']} | {_fmt(r['parsed'], 2)} | {_fmt(r['accuracy'])} | "
            f"{_fmt(r['auroc'])} | {_fmt(r['ece'])} | {r['note']} |"
            for r in summary["blackbox"]
        ]
    if summary.get("cascade"):
        large = "cascade_accuracy" in summary["cascade"][0]
        lines += [
            "",
            "## Selective answering" + (" and cascade" if large else ""),
            "",
            "| target coverage | threshold | coverage | selective accuracy |"
            + (" cascade accuracy |" if large else ""),
            "|---|---|---|---|" + ("---|" if large else ""),
        ]
        for r in summary["cascade"]:
            lines.append(
                f"| {r['target_coverage']:.2f} | {r['threshold']:.3f} | "
                f"{r['coverage']:.2f} | {_fmt(r['selective_accuracy'])} |"
                + (f" {_fmt(r['cascade_accuracy'])} |" if large else "")
            )
    if summary["cntp"]:
        lines += ["", "## Cautious next-token prediction", "", "| method | accuracy |", "|---|---|"]
        lines += [f"| {r['method']} | {_fmt(r['accuracy'])} |" for r in summary["cntp"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "confidence_benchmark")
