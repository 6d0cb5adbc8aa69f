"""LM-Polygraph's side of benchmarks/vs_lm_polygraph.py (run inside the venv that script builds).

    build/lm_polygraph_venv/bin/python benchmarks/lm_polygraph_side.py IN.json OUT.json

Not meant to be run by hand: `vs_lm_polygraph.py` writes IN.json and reads OUT.json. This file
imports nothing from introspect (the venv has LM-Polygraph 0.7.0, torch and transformers only).

IN.json: {"mode", "model_dir", "gguf_file", "test_prompts", "train_prompts", "max_new_tokens",
"samples", "batch_size", "seed", "threads"}; prompts are chat-templated texts (LM-Polygraph
tokenizes them itself). Modes:

* "timed": one `UEManager` run over the test prompts with every compared estimator, end to end:
  greedy generation (GreedyProbsCalculator, hidden states on, attentions off: no compared
  estimator reads them), `samples` samples per question (SamplingGenerationCalculator),
  the training embeddings of the train prompts (TrainingStatisticExtractionCalculator, for
  MahalanobisDistanceSeq), the equivalence matrices below, and the estimators.
* "mahalanobis" (IN.json also has "test_answers" and "train_answers", greedy token ids):
  MahalanobisDistanceSeq on "decoder" embeddings made by its own `get_embeddings_from_output`
  from a batch-size-1 forward pass over prompt + answer[:-1], the positions its generate() pass
  sees. In the timed run that embedding is the mean of the last hidden state over every
  position of the batch's generate() output, which with batch size > 1 includes the left
  padding and the steps after a row's EOS: its value depends on the batch. At batch size 1
  (here) it is the mean over prompt + answer[:-1], which introspect mirrors.

Where this differs from LM-Polygraph's defaults (`SETTINGS`, also in the benchmark's output):
its NLI model (DeBERTa, downloaded from the hub at run time, which this machine cannot reach) is
replaced by `EquivalenceMatrixCalculator` (entailment = SQuAD-normalised texts equal, the same
equivalence introspect is given); `min_new_tokens=2`, which its calculators pass to generate()
(the EOS logit is masked, then replaced by the row minimum by its logits sanitizer, in the first
two steps, so its statistics there are not the model's distribution), is dropped; attentions
are not recorded (no compared estimator reads them); and its training-statistics calculator is
given the run's max_new_tokens and keeps only what is read (see `calculators`).

OUT.json: {"versions", "seconds": {"import", "load", "run"}, "estimates": {short name: [n]},
"greedy_tokens", "greedy_texts", "sample_tokens", "sample_texts", "sample_log_probs",
"train_greedy_tokens", "prompt_tokens" (the ids it tokenized)}.
"""

from __future__ import annotations

import json
import re
import string
import sys
import time
import warnings
from typing import Any

_T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from lm_polygraph import estimators as E  # noqa: E402
from lm_polygraph.defaults.register_default_stat_calculators import (  # noqa: E402
    register_default_stat_calculators,
)
from lm_polygraph.stat_calculators import (  # noqa: E402
    GreedyProbsCalculator,
    SamplingGenerationCalculator,
    StatCalculator,
    TrainingStatisticExtractionCalculator,
)
from lm_polygraph.stat_calculators.embeddings import get_embeddings_from_output  # noqa: E402
from lm_polygraph.utils.builder_enviroment_stat_calculator import (  # noqa: E402
    BuilderEnvironmentStatCalculator,
)
from lm_polygraph.utils.dataset import Dataset  # noqa: E402
from lm_polygraph.utils.factory_stat_calculator import StatCalculatorContainer  # noqa: E402
from lm_polygraph.utils.generation_parameters import GenerationParameters  # noqa: E402
from lm_polygraph.utils.manager import UEManager  # noqa: E402
from lm_polygraph.utils.model import WhiteboxModel  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T0

# short name -> LM-Polygraph estimator (the names vs_lm_polygraph.py compares).
ESTIMATORS = {
    "msp": lambda: E.MaximumSequenceProbability(),
    "perplexity": lambda: E.Perplexity(),
    "mean_token_entropy": lambda: E.MeanTokenEntropy(),
    "self_certainty": lambda: E.SelfCertainty(),
    "renyi_neg": lambda: E.RenyiNeg(),
    "fisher_rao": lambda: E.FisherRao(),
    "lexical_similarity": lambda: E.LexicalSimilarity("rougeL"),
    "num_sem_sets": lambda: E.NumSemSets(),
    "semantic_entropy": lambda: E.SemanticEntropy(),
    "eigval_laplacian": lambda: E.EigValLaplacian(similarity_score="Jaccard_score"),
    "degree_matrix": lambda: E.DegMat(similarity_score="Jaccard_score"),
    "eccentricity": lambda: E.Eccentricity(similarity_score="Jaccard_score"),
    "mahalanobis": lambda: E.MahalanobisDistanceSeq("decoder"),
}

SETTINGS = [
    "NLI (DeBERTa) replaced by SQuAD-normalised text equality (EquivalenceMatrixCalculator)",
    "min_new_tokens=2 dropped from generate() (EOS not masked in the first two steps)",
    "output_attentions=False (GreedyProbsCalculator and the training calculator's)",
    "training answers generated with max_new_tokens (0.7.0 uses 100 for them)",
    "training calculator keeps only embeddings and greedy tokens (memory)",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.I)
_PUNCT = set(string.punctuation)


def normalize(text: str) -> str:
    """SQuAD normalisation (lower case, no punctuation, no articles, single spaces)."""
    s = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


class EquivalenceMatrixCalculator(StatCalculator):
    """Stands in for SemanticMatrixCalculator (DeBERTa NLI): for each pair of samples,
    entailment probability 1 when their SQuAD-normalised texts are equal, else contradiction 1.
    NumSemSets (entail > contra both ways) and SemanticClassesCalculator (argmax = entailment
    both ways) then group the samples by that equivalence."""

    ENTAILMENT_ID = 2  # deberta-large-mnli's label order: contradiction, neutral, entailment

    @staticmethod
    def meta_info() -> tuple[list[str], list[str]]:
        return [
            "semantic_matrix_entail",
            "semantic_matrix_contra",
            "semantic_matrix_classes",
            "semantic_matrix_entail_logits",
            "semantic_matrix_contra_logits",
            "entailment_id",
        ], ["sample_texts"]

    def __call__(self, dependencies, texts, model, max_new_tokens=100, **kwargs):
        batch = dependencies["sample_texts"]
        k = max(len(s) for s in batch)
        same = np.zeros((len(batch), k, k))
        for b, row in enumerate(batch):
            norm = [normalize(t) for t in row]
            for i, a in enumerate(norm):
                for j, c in enumerate(norm):
                    same[b, i, j] = float(a == c)
        return {
            "semantic_matrix_entail": same,
            "semantic_matrix_contra": 1.0 - same,
            "semantic_matrix_classes": np.where(same > 0, self.ENTAILMENT_ID, 0),
            "semantic_matrix_entail_logits": same,
            "semantic_matrix_contra_logits": 1.0 - same,
            "entailment_id": self.ENTAILMENT_ID,
        }


class TrainingGreedyProbs(GreedyProbsCalculator):
    """GreedyProbsCalculator (attentions off, hidden states on) whose output keeps only the
    embeddings and the greedy tokens (see `calculators`)."""

    KEEP = ("embeddings_decoder", "greedy_tokens")

    def __init__(self):
        super().__init__(output_attentions=False, output_hidden_states=True)

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        return {k: v for k, v in out.items() if k in self.KEEP}


class TrainingStatistics(TrainingStatisticExtractionCalculator):
    """TrainingStatisticExtractionCalculator with the run's max_new_tokens. In 0.7.0 it
    generates the training answers with up to 100 new tokens whatever max_new_tokens is (it
    compares its list of dataset names with "train_", never true, and falls back to
    `background_train_dataset_max_new_tokens=100`); passed through here, so that both sides
    generate answers of the same length."""

    def __call__(self, dependencies, texts, model, max_new_tokens=100, **kwargs):
        kwargs["background_train_dataset_max_new_tokens"] = max_new_tokens
        return super().__call__(dependencies, texts, model, max_new_tokens, **kwargs)


class Model(WhiteboxModel):
    """WhiteboxModel without the `min_new_tokens=2` its stat calculators pass to generate()."""

    def generate(self, **args):
        args.pop("min_new_tokens", None)
        return super().generate(**args)


# Calculators built here, handed to UEManager through `load_stat_calculator` (its builder API).
_BUILT: dict[str, StatCalculator] = {}


def load_stat_calculator(cfg, env) -> StatCalculator:
    """The builder UEManager calls (`StatCalculatorContainer.builder` = this module)."""
    return _BUILT[cfg.obj]


def _container(obj: StatCalculator) -> StatCalculatorContainer:
    name = type(obj).__name__
    _BUILT[name] = obj
    stats, deps = type(obj).meta_info()
    return StatCalculatorContainer(
        name=name,
        obj=type(obj),
        builder=__name__,
        cfg=OmegaConf.create({"obj": name}),
        dependencies=deps,
        stats=stats,
    )


def calculators(train: Dataset, samples: int) -> list[StatCalculatorContainer]:
    """LM-Polygraph's default white-box calculators (attentions off, hidden states on), with
    the sampler set to `samples`, the NLI matrices replaced, and the training statistics."""
    training = TrainingStatistics(train, None)
    # Its inner GreedyProbsCalculator records attentions by default, which needs the eager
    # attention kernel (with SDPA generate() returns none and it fails): off, as in the main
    # GreedyProbsCalculator. And it keeps every statistic of every training answer until the
    # end, full-vocabulary distributions included (~200 KB a token: 600 answers of 32 tokens
    # are ~4 GB, more than this machine can spare): `TrainingGreedyProbs` computes all of them
    # and keeps only what MahalanobisDistanceSeq and this benchmark read.
    training.base_calculators = [TrainingGreedyProbs()]
    ours = [
        _container(SamplingGenerationCalculator(samples_n=samples)),
        _container(EquivalenceMatrixCalculator()),
        _container(training),
    ]
    replaced = {c.name for c in ours} | {"SemanticMatrixCalculator"}
    default = register_default_stat_calculators(
        "Whitebox", output_attentions=False, output_hidden_states=True
    )
    return [c for c in default if c.name not in replaced] + ours


def load_model(cfg: dict) -> Model:
    tok = transformers.AutoTokenizer.from_pretrained(
        cfg["model_dir"], gguf_file=cfg["gguf_file"], padding_side="left"
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        cfg["model_dir"], gguf_file=cfg["gguf_file"], dtype=torch.float32
    )
    hf.eval()
    # LM-Polygraph's defaults (temperature 1, top-k 50, top-p 1), greedy unless a calculator
    # asks for sampling.
    params = GenerationParameters(max_new_tokens=cfg["max_new_tokens"])
    return Model(hf, tok, cfg["gguf_file"], "CausalLM", params)


def run(cfg: dict, model: Model) -> dict[str, Any]:
    """The timed end-to-end UEManager run."""
    torch.manual_seed(cfg["seed"])
    bs = cfg["batch_size"]
    ests = {n: make() for n, make in ESTIMATORS.items()}
    train = Dataset(cfg["train_prompts"], [""] * len(cfg["train_prompts"]), batch_size=bs)
    save = ["greedy_texts", "greedy_tokens", "train_greedy_tokens"]
    save += ["sample_texts", "sample_tokens", "sample_log_probs"]
    man = UEManager(
        Dataset(cfg["test_prompts"], [""] * len(cfg["test_prompts"]), batch_size=bs),
        model,
        list(ests.values()),
        builder_env_stat_calc=BuilderEnvironmentStatCalculator(model),
        available_stat_calculators=calculators(train, cfg["samples"]),
        generation_metrics=[],
        ue_metrics=[],
        processors=[],
        ignore_exceptions=False,
        verbose=True,
        max_new_tokens=cfg["max_new_tokens"],
        save_stats=save,
    )
    t0 = time.perf_counter()
    man()
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {
        "seconds_run": seconds,
        "estimates": {
            n: [float(x) for x in man.estimations["sequence", str(e)]] for n, e in ests.items()
        },
    }
    for key in save:
        value = man.stats.get(key)
        if value is not None:
            out[key] = _plain(value)
    return out


class _Prefill:
    """What `get_embeddings_from_output` reads of a generate() output: hidden_states[0] is the
    pass over the input (a tuple over layers); no generated steps follow."""

    def __init__(self, hidden_states):
        self.hidden_states = (hidden_states,)


def embeddings(model: Model, prompts: list[str], answers: list[list[int]]) -> np.ndarray:
    """[n, hidden] LM-Polygraph "decoder" embeddings at batch size 1 (see the module doc)."""
    rows = []
    with torch.no_grad():
        for text, answer in zip(prompts, answers, strict=True):
            batch = model.tokenize([text])
            ids = torch.cat([batch["input_ids"], torch.tensor([answer[:-1]], dtype=torch.long)], 1)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            out = model.model(**batch, output_hidden_states=True)
            _, emb = get_embeddings_from_output(_Prefill(out.hidden_states), batch, "CausalLM")
            rows.append(emb.numpy())
    return np.concatenate(rows)


def run_mahalanobis(cfg: dict, model: Model) -> dict[str, Any]:
    """MahalanobisDistanceSeq on batch-size-1 embeddings of the given answers."""
    t0 = time.perf_counter()
    stats = {
        "embeddings_decoder": embeddings(model, cfg["test_prompts"], cfg["test_answers"]),
        "train_embeddings_decoder": embeddings(model, cfg["train_prompts"], cfg["train_answers"]),
    }
    values = ESTIMATORS["mahalanobis"]()(stats)
    return {
        "seconds_run": time.perf_counter() - t0,
        "estimates": {"mahalanobis": [float(x) for x in values]},
    }


def _plain(x: Any) -> Any:
    """Lists of lists of Python ints / floats / strings (JSON)."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


def main() -> None:
    src, dst = sys.argv[1:3]
    with open(src) as f:
        cfg = json.load(f)
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    t0 = time.perf_counter()
    model = load_model(cfg)
    load = time.perf_counter() - t0
    prompt_tokens = [model.tokenizer(t)["input_ids"] for t in cfg["test_prompts"]]
    out = run(cfg, model) if cfg["mode"] == "timed" else run_mahalanobis(cfg, model)
    import lm_polygraph

    out["seconds"] = {"import": IMPORT_SECONDS, "load": load, "run": out.pop("seconds_run")}
    out["prompt_tokens"] = prompt_tokens
    out["settings"] = SETTINGS
    out["versions"] = {
        "lm_polygraph": getattr(lm_polygraph, "__version__", None) or _version("lm-polygraph"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    with open(dst, "w") as f:
        json.dump(out, f)


def _version(dist: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(dist)


if __name__ == "__main__":
    main()
