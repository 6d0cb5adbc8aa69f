"""A correctness probe on the embedded model's hidden state at the last prompt token.

    python -m experiments.train_probe --config configs/train_probe.py:smoke --workdir /tmp/probe

Runtime on a 2-core CPU: ~2 minutes for `:smoke` (128 one-digit questions; model load ~10 s,
one generation compile ~20 s, 600 probe steps with a checkpoint every 2 s), ~6 minutes for the
default (512 questions, one- and two-digit). The model answers each question greedily; the
hidden states of `layers` at the last prompt token (captured during that same generation) are
stored once in <workdir>/features; an MLP probe learns to predict whether the answer is correct.
Prints the model's accuracy, the class balance, then the held-out probe metrics
("probe held-out AUROC 0.xxx accuracy 0.xxx (n=..)"), and a final JSON line. Writes
<workdir>/{features,train,probe} (feature store, training checkpoints/metrics, the orbax-saved
probe) and results/train_probe/<run>/ (config.json, metrics.json, predictions.jsonl, table.md).

Kill it at any time and run the same command again: the features are not extracted twice and
training resumes from its last checkpoint. Override fields, e.g. `--config.probe.name=logistic
--config.train.optimizer.lr=3e-4 --config.layers="(15, 30)" --config.probe.loss.name=brier`.
A loss of your own: `@losses.register("my_loss")` in `my_module.py`, then
`--config.imports=my_module --config.probe.loss.name=my_loss` (README, "Add a loss").
"""

import ml_collections

from configs.common import probe_fields


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Comma-separated modules imported first, so their @losses.register(...) entries exist.
    c.imports = ""
    # A registered name ("smollm2-135m-instruct"), a .gguf file or a Hugging Face directory.
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    # Questions: how many in total, split evenly over `digits` (operand sizes); duplicates of an
    # expression are dropped so the held-out split never repeats a training question.
    c.num_questions = 512
    c.seed = 0
    c.digits = (1, 2)
    c.operators = ("+", "-", "*")
    c.num_operands = 2
    # The user turn; {question} is replaced by the question.
    c.prompt = "{question} Answer with just the number."
    # Greedy decoding of the answer that is graded.
    c.max_new_tokens = 8
    # Hidden-state indices whose states are concatenated (0 = embeddings, 30 = final norm).
    c.layers = (10, 20, 30)
    # Prompts per generation call (= per feature-store shard); keep it fixed: one compile.
    c.batch_size = 64
    # Fraction of questions held out for the probe's AUROC/accuracy.
    c.val_fraction = 0.3

    # Probe (MLP 256-64, BCE, L2 1e-4) and its training loop (configs/common.py).
    c.probe, c.train = probe_fields(num_steps=2000, eval_every=500)

    # Results go to <results_root>/train_probe/<run_name> (default: a UTC timestamp).
    c.run_name = ""
    c.results_root = "results"
    if arg == "smoke":
        c.num_questions = 128
        c.digits = (1,)
        c.train.num_steps = 600
        c.train.eval_every = 200
        c.train.checkpoint.every_steps = 100
        c.train.checkpoint.every_seconds = 2.0
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use configs/train_probe.py or :smoke")
    return c
