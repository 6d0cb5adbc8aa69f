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

import time

import numpy as np
from absl import app, logging
from ml_collections import config_flags

from introspect import calibrators, data, decoding, metrics, models, results, signals

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


def score_split(lm, examples, config, *, with_samples: bool, rng_seed: int) -> dict:
    """Generate, grade and compute every signal for one split."""
    fmt = config.prompt_format
    ids = [data.build_prompt_ids(lm.tokenizer, ex, fmt) for ex in examples]
    gen = lm.generate(
        ids,
        max_new_tokens=config.max_new_tokens,
        return_stats=True,
        batch_size=config.batch_size,
        progress=True,
    )
    graded = [data.grade(ex, t, fmt=fmt) for ex, t in zip(examples, gen.texts, strict=True)]
    extracted = [g[0] for g in graded]
    correct = np.array([g[1] for g in graded], np.float64)
    stats, mask = signals.from_ragged(gen.logprobs, gen.stats)
    values = signals.compute_all(
        stats, mask, vocab_size=lm.config.vocab_size, exclude=("answer_confidence",)
    )
    span = np.zeros_like(mask)
    for i, (toks, ans) in enumerate(zip(gen.tokens, extracted, strict=True)):
        span[i, : len(toks)] = answer_span_mask(lm.tokenizer, toks, ans)
    values["answer_confidence"] = np.asarray(signals.compute("answer_confidence", stats, span))
    values["p_true"] = signals.p_true(lm, [ex["question"] for ex in examples], gen.texts)
    values["hedge"] = signals.hedge_score(gen.texts)
    out = {"ids": ids, "gen": gen, "extracted": extracted, "correct": correct, "values": values}
    if with_samples and config.num_samples > 0:
        samples = decoding.best_of_n.sample(
            lm,
            ids,
            n=config.num_samples,
            max_new_tokens=config.max_new_tokens,
            temperature=config.sample_temperature,
            top_p=config.sample_top_p,
            seed=rng_seed,
            batch_size=config.batch_size,
            progress=True,
        )
        answers = [
            [data.grade(ex, t, fmt=fmt)[0] for t in row]
            for ex, row in zip(examples, samples.texts, strict=True)
        ]
        same = equivalent(examples[0]["answer_type"])
        values["consistency"] = np.array(
            [
                signals.consistency(ref, row, equivalent=same)
                for ref, row in zip(extracted, answers, strict=True)
            ]
        )
        values["neg_num_distinct"] = np.array(
            [signals.neg_num_distinct(r, equivalent=same) for r in answers]
        )
        values["neg_cluster_entropy"] = np.array(
            [signals.neg_cluster_entropy(r, equivalent=same) for r in answers]
        )
        out["samples"] = samples
        out["sample_answers"] = answers
    return out


def best_of_n_table(examples, test, config) -> list[dict]:
    """Accuracy vs N for greedy, majority, self-certainty and Borda(p) over the sample pool."""
    rows = []
    answers, sc = test["sample_answers"], test["samples"].signals["self_certainty"]
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


def run(config) -> dict:
    out_dir = results.run_dir(
        "confidence_benchmark", config.run_name or None, root=config.results_root
    )
    results.write_json(f"{out_dir}/config.json", config.to_dict())
    t0 = time.perf_counter()
    lm = models.load(config.model, dtype=config.dtype)
    cal_ex = load_examples(config, config.calibration_split, config.num_calibration)
    test_ex = load_examples(config, config.test_split, config.num_test)
    cal = score_split(
        lm, cal_ex, config, with_samples=config.samples_on_calibration, rng_seed=config.seed
    )
    test = score_split(lm, test_ex, config, with_samples=True, rng_seed=config.seed + 1)

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

    # Plots: reliability of the best-AUROC signal after isotonic calibration; risk-coverage.
    ranked = sorted((r["auroc"] or 0.0, n) for n, r in table.items())
    best = ranked[-1][1] if ranked else None
    if best is not None and table[best]["_p_iso"] is not None:
        metrics.plot_reliability_diagram(
            table[best]["_p_iso"],
            test["correct"],
            num_bins=config.num_bins,
            title=f"{best} (isotonic), test split",
            path=f"{out_dir}/reliability.png",
        )
    if best is not None:
        metrics.plot_risk_coverage(
            test["values"][best],
            test["correct"],
            title=f"risk-coverage: {best}",
            path=f"{out_dir}/risk_coverage.png",
        )

    bon = best_of_n_table(test_ex, test, config) if "samples" in test else []
    blackbox = blackbox_table(lm, test_ex, test, config)
    cascade = cascade_table(test_ex, cal, test, config)
    cntp_rows = cntp_table(lm, test_ex, test, config)
    for r in table.values():
        r.pop("_p_iso", None)
    summary = {
        "model": config.model,
        "task": config.task,
        "num_calibration": len(cal_ex),
        "num_test": len(test_ex),
        "accuracy_test": float(test["correct"].mean()),
        "accuracy_calibration": float(cal["correct"].mean()),
        "signals": table,
        "best_of_n": bon,
        "cntp": cntp_rows,
        "blackbox": blackbox,
        "cascade": cascade,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    md = render_table(summary)
    rows = []
    for i, ex in enumerate(test_ex):
        rows.append(
            {
                **ex,
                "response": test["gen"].texts[i],
                "extracted": test["extracted"][i],
                "correct": bool(test["correct"][i]),
                "signals": {k: float(v[i]) for k, v in test["values"].items()},
            }
        )
    results.write_jsonl(f"{out_dir}/answers.jsonl", rows)
    results.write_json(f"{out_dir}/metrics.json", summary)
    results.write_text(f"{out_dir}/table.md", md)
    print(md)
    print(f"results: {out_dir}/")
    return summary


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
        f"Test accuracy {summary['accuracy_test']:.3f} (n = {summary['num_test']}); "
        f"calibration split n = {summary['num_calibration']}.",
        "",
        "| signal | " + " | ".join(c for _, c in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    order = sorted(summary["signals"], key=lambda n: -(summary["signals"][n]["auroc"] or 0))
    for name in order:
        r = summary["signals"][name]
        lines.append(f"| {name} | " + " | ".join(_fmt(r[k]) for k, _ in COLUMNS) + " |")
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # keep absl/TFDS info lines out of the tables
    run(_CONFIG.value)


if __name__ == "__main__":
    # Flags are defined only when run as a program, so experiments import side by side.
    _CONFIG = config_flags.DEFINE_config_file(
        "config", "configs/confidence_benchmark.py", "experiment config"
    )
    app.run(main)
