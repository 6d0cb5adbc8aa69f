"""RISE: an SAE on reasoning-step activations, behaviour latents, steering, confidence vectors.

    python -m experiments.rise --config configs/rise.py:smoke --workdir /tmp/rise

Runtime on a 2-core CPU: 9 to 11 minutes for `:smoke` (528 s and 659 s measured; embedded
SmolLM2-135M-Instruct, synthetic suite: 96 training and 32 test traces of up to 96 tokens, steps
at line ends and full stops, a TopK SAE with 1024 latents on layer 15, 4 non-zero alphas along 2
latents over 24 test prompts, each response followed by a confidence question); a rerun reads
traces and step activations from the generation store and the SAE from <workdir>. The
default (GSM8K, 512 + 128 traces of up to 256 tokens, 4608 latents) is sized for an
accelerator. A 135M instruct model never says "wait", backtracks or verifies unprompted, so on
it only the final-answer behaviour has positive steps; point `model` at a reasoning checkpoint
(e.g. an HF directory of DeepSeek-R1-Distill-Qwen-1.5B) on a TPU/GPU host to find reflection
and backtracking latents.

Writes results/rise/<run>/: config.json, metrics.json (fvu, l0, dead_fraction, lm_loss,
behaviours, clusters, confidence_vectors, steering: one row per (vector, alpha)), table.md,
latent_map.png (decoder rows in 2-D by PCA, coloured by dominant behaviour), steering.png,
sae_params.npz. <workdir>/sae holds the SAE's training checkpoints.
"""

import ml_collections

from introspect import sae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Comma-separated modules imported first (their @losses.register entries, e.g. an SAE loss).
    c.imports = ""
    # A registered name, a .gguf file or a Hugging Face directory; compute dtype.
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    # Device mesh for generation: batches over "data", weights over "model" (more than 1 device).
    c.mesh = ml_collections.ConfigDict({"data": -1, "model": 1})
    # Task (introspect.data) and two disjoint example sets, (split, count) per role; roles
    # naming the same split take consecutive slices of it (train first).
    c.task = "gsm8k"
    c.train_split = ("test", 512)
    c.test_split = ("test", 128)
    c.data_dir = ""
    # Reasoning prompt (introspect.data.PROMPT_FORMATS), greedy budget, generation batch.
    c.prompt_format = "cot"
    c.max_new_tokens = 256
    c.batch_size = 32
    # Hidden-state index the SAE reads and steers (0 = embeddings, i = after block i - 1; SmolLM2
    # has 30 blocks). RISE does not publish its layer: a middle layer.
    c.layer = 15
    # Step delimiters (a step ends at the token completing any of them; RISE: "\n\n") and the
    # step activation: the state at that token ("delimiter", RISE) or the mean over the step.
    c.delimiters = ("\n\n",)
    c.pool = "delimiter"

    # The SAE (introspect.sae.default_config; `train` is the one training loop's config).
    c.sae = sae.default_config()
    c.sae.kind = "topk"
    c.sae.num_latents = 4608  # 8 x SmolLM2's width
    c.sae.k = 32
    c.sae.train.num_steps = 3000
    c.sae.train.batch_size = 256
    c.sae.train.eval_every = 1000
    # Held-out sequences (test prompt + trace) for the LM-loss increase, the reconstruction in
    # the stream at their step positions (0 = all test traces).
    c.num_loss_sequences = 64

    # Behaviours (introspect.sae.BEHAVIOURS keyword rules): a latent's dominant behaviour is
    # the one whose label its activation predicts best, if that AUROC >= assoc_threshold.
    c.assoc_threshold = 0.6
    c.top_latents = 5  # per behaviour, reported
    # Spherical k-means on the live decoder rows (cosine), for the cluster table and the map.
    c.num_clusters = 8
    # Confidence vectors: a latent's per-trace activation (mean over the trace's steps) scored
    # by AUROC for the trace's answer being right (train traces; reported on test traces).
    c.trace_pool = "mean"

    # Steering sweep: alpha * (unit decoder row) added to the residual stream at every
    # position, prompt included; alphas in units of the mean L2 norm of the layer's step
    # activations ("norm") or of the residual stream itself ("raw").
    c.steer_behaviours = ("reflection", "verification")
    c.steer_confidence = True
    c.alphas = (-0.2, -0.1, 0.0, 0.1, 0.2)
    c.alpha_unit = "norm"
    c.num_steer_prompts = 64  # test prompts steered (0 = all)
    # Stated confidence: after the steered response, this text is appended and
    # confidence_tokens decoded greedily (same steering); the number is parsed.
    c.confidence_text = "\nConfidence (0-100%):"
    c.confidence_tokens = 6
    c.seed = 0

    # Generation store (introspect.store): traces and step activations are made once per key
    # and read back by later runs ("" = <results_root>/store); False = no store.
    c.use_store = True
    c.store = ""
    c.store_shard_size = 32
    # Results go to <results_root>/rise/<run_name> (default: a UTC timestamp).
    c.run_name = ""
    c.results_root = "results"
    if arg == "smoke":
        c.task = "synthetic_easy"
        c.train_split = ("train", 96)
        c.test_split = ("test", 32)
        c.max_new_tokens = 96
        c.delimiters = ("\n", ".")  # lines and sentences (also splits "3.5": a smoke run)
        c.sae.num_latents = 1024
        c.sae.k = 16
        c.sae.train.num_steps = 1500
        c.sae.train.eval_every = 500
        c.num_loss_sequences = 32
        c.num_clusters = 6
        c.steer_behaviours = ("final_answer",)
        c.num_steer_prompts = 24
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke or nothing")
    return c
