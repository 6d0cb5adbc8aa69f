"""GRPO on the Flax LM through the one training loop.

    from introspect import models, posttrain
    lm = models.load("smollm2-135m-instruct")
    cfg = posttrain.grpo_config()
    cfg.reward.name = "starts_with"             # posttrain.TEXT_REWARDS
    result = posttrain.train_grpo(lm, prompts, examples, cfg, workdir="/tmp/grpo")
    tuned = lm.with_params(result.params)       # generation / the confidence benchmark

Each optimiser step (steps_per_dispatch 1, on-policy):
1. `RolloutFeed` (the loop's data iterator, bound to the current state after every step):
   prompts_per_step prompts (a seeded permutation per epoch), group_size samples each from the
   compiled generator with the current parameters; rewards by name (`TEXT_REWARDS`);
   advantages by name ("grpo": group-normalised; "riskpo": question bundles of the step's
   prompts; "negative_only"; "trust_grpo" with a second, thinking reward; the token-level
   "ucas" and "empg", which read the rollout's logits / entropies from one extra forward of
   the current policy; "steer", GRPO advantages with STEER token weights computed in the
   loss); the sampler's log-probs are the old log-probs (one update per rollout: the ratio
   is 1 up to the decode/forward numerics); the frozen reference's log-probs when
   kl_coef > 0. Its state (step, RiskPO tracker) is checkpointed with the train state, so a
   restart regenerates the same rollouts.
2. The loss by name (`config.loss.name`, default "clipped_policy": the clipped ratio objective
   with optional KL to the reference and dual clip) on the policy's token log-probs; metrics
   reward_mean, accuracy, brier / ece of stated confidence, response_length, entropy, kl.

LoRA (`config.lora.rank` > 0, `posttrain.lora`): the adapters train, the base is frozen and
is also the KL reference; `lora.merged(result.params)` gives the LM's parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import losses, metrics, sae
from introspect import train as train_lib
from introspect.posttrain import lora, policy
from introspect.posttrain.rewards import TEXT_REWARDS, compute_reward
from introspect.train.data import host_rows

ADVANTAGES = ("grpo", "negative_only", "riskpo", "trust_grpo", "ucas", "empg", "steer")
# The transforms that read the rollout's per-token logits / entropies (one extra forward).
TOKEN_LEVEL = ("ucas", "empg")
# Options of each transform that are not keyword arguments of its pure function.
_EXTRA_OPTIONS = {
    "riskpo": ("bundle_size", "tracker_lr"),
    "trust_grpo": ("thinking_reward", "thinking_options"),
    "empg": ("step_delimiter",),
}
# The function whose keyword arguments advantage.options are.
_OPTION_FNS = {
    "grpo": losses.grpo_advantages,
    "negative_only": losses.negative_only_advantages,
    "riskpo": losses.riskpo_advantages,
    "trust_grpo": losses.trust_grpo_rewards,
    "ucas": losses.ucas_advantages,
    "empg": losses.empg_advantages,
    "steer": losses.steer_weights,
}
# Filled in by the trainer, never by options.
_INPUTS = (
    "rewards", "mask", "validate", "outcome", "thinking", "step", "certainty", "sampled_logits",
    "group_mask", "advantages", "step_entropy", "step_mask", "logprobs", "old_logprobs",
    "entropy", "tracker",
)  # fmt: skip


def grpo_config() -> ml_collections.ConfigDict:
    """Every field of a GRPO run (a comment over each); `train` is the loop's config."""
    c = ml_collections.ConfigDict()
    # Prompts per step and samples per prompt (train.batch_size = their product).
    c.prompts_per_step = 4
    c.group_size = 4
    # Prompt budget (left padding to a fixed shape) and response budget.
    c.max_prompt_tokens = 128
    c.max_new_tokens = 32
    # Sampling of the rollouts.
    c.temperature = 1.0
    c.top_p = 1.0
    c.top_k = 0
    # Reward by name (introspect.posttrain.TEXT_REWARDS) and its options.
    c.reward = ml_collections.ConfigDict({"name": "binary_correct", "options": {}})
    # Advantage by name (ADVANTAGES), options = the keyword arguments of its pure function:
    #   "grpo" / "negative_only": eps, ddof, scale_by_std (losses.grpo_advantages);
    #   "riskpo": bundle_size (prompts per bundle), alpha, beta, weight, credit,
    #     quantile_mode, tracker_lr, ...;
    #   "trust_grpo": thinking_reward (a TEXT_REWARDS name), thinking_options, alpha,
    #     anneal_steps, threshold;
    #   "ucas": pos_scale, neg_scale, token_coef, eps;
    #   "empg": step_delimiter (default "\n"), k, k_future, zeta, eps;
    #   "steer": w_min, w_max, clip_range (token weights in the loss; the authors pair them
    #     with loss.options.dual_clip 3 to 10).
    # group_options: the group normalisation (grpo_advantages options) under trust_grpo,
    # empg and steer.
    c.advantage = ml_collections.ConfigDict({"name": "grpo", "options": {}, "group_options": {}})
    # The loss by name (introspect.losses.LOSSES) and its options.
    c.loss = ml_collections.ConfigDict(
        {"name": "clipped_policy", "options": {"clip_eps": 0.2, "kl_coef": 0.0}}
    )
    # LoRA adapters (rank 0 = full fine-tuning; posttrain.lora).
    c.lora = lora.lora_config()
    c.seed = 0
    t = policy.train_config(
        num_steps=50, batch_size=c.prompts_per_step * c.group_size, lr=1e-5, log_every=1,
        checkpoint_every=10, keep=2, tensorboard=True,
    )  # fmt: skip
    t.shuffle = False
    t.steps_per_dispatch = 1
    c.train = t
    return c


def check_config(config) -> None:
    """ValueError naming the bad field."""
    if int(config.group_size) < 2:
        raise ValueError(
            f"config.group_size must be >= 2 (GRPO compares samples of the same prompt), got "
            f"{config.group_size}"
        )
    if int(config.prompts_per_step) < 1:
        raise ValueError(f"config.prompts_per_step must be >= 1, got {config.prompts_per_step}")
    want = int(config.prompts_per_step) * int(config.group_size)
    if int(config.train.batch_size) != want:
        raise ValueError(
            f"config.train.batch_size must be prompts_per_step * group_size = {want}, got "
            f"{config.train.batch_size}"
        )
    if int(config.train.steps_per_dispatch) != 1:
        raise ValueError("config.train.steps_per_dispatch must be 1 (rollouts are on-policy)")
    if config.reward.name not in TEXT_REWARDS:
        raise ValueError(
            f"config.reward.name: unknown reward {config.reward.name!r}; registered: "
            f"{TEXT_REWARDS.names()}"
        )
    name = config.advantage.name
    if name not in ADVANTAGES:
        raise ValueError(f"config.advantage.name: unknown {name!r}; use one of {ADVANTAGES}")
    _check_options(
        _OPTION_FNS[name], config.advantage.options, _EXTRA_OPTIONS.get(name, ()),
        f"config.advantage.options ({name})",
    )  # fmt: skip
    _check_options(
        losses.grpo_advantages, config.advantage.get("group_options", {}), (),
        "config.advantage.group_options",
    )  # fmt: skip
    if name == "riskpo":
        b = int(config.advantage.options.get("bundle_size", 1))
        if b < 1 or int(config.prompts_per_step) % b:
            raise ValueError(
                f"config.advantage.options.bundle_size ({b}) must divide prompts_per_step "
                f"({config.prompts_per_step})"
            )
    if name == "trust_grpo":
        thinking = config.advantage.options.get("thinking_reward")
        if thinking not in TEXT_REWARDS:
            raise ValueError(
                "config.advantage.options.thinking_reward: trust_grpo needs the thinking "
                f"reward's name (one of {TEXT_REWARDS.names()}), got {thinking!r}"
            )
    if name == "steer" and config.loss.name != "clipped_policy":
        raise ValueError(
            "config.advantage.name 'steer' weights the tokens of the 'clipped_policy' loss; "
            f"config.loss.name is {config.loss.name!r}"
        )
    if int(config.max_new_tokens) < 1 or int(config.max_prompt_tokens) < 1:
        raise ValueError("config.max_new_tokens and config.max_prompt_tokens must be >= 1")


def _check_options(fn, options, extra, field) -> None:
    known = [k for k in inspect.signature(fn).parameters if k not in _INPUTS]
    for key in options or {}:
        if key not in known and key not in extra:
            raise ValueError(
                f"{field}: unknown option {key!r}; options: {', '.join([*known, *extra])}"
            )


def advantages(
    rewards: np.ndarray,
    config,
    tracker=None,
    *,
    step: int = 0,
    thinking: np.ndarray | None = None,
    stats: Mapping[str, np.ndarray] | None = None,
):
    """Advantages of one step's rollouts (rows grouped by prompt, group_size each) by name.

    Args:
      rewards: [n] the responses' rewards.
      config: the GRPO config (`config.advantage`).
      tracker: the RiskPO quantile tracker's state (tracked quantile modes), else None.
      step: the training step (trust_grpo's annealing).
      thinking: [n] trust_grpo's thinking rewards.
      stats: the token-level transforms' rollout statistics (`rollout_stats`): [n, length]
        "token_mask", "certainty", "sampled_logit", "entropy" and "step_ids".
    Returns:
      (advantages: [n] per response, or [n, length] per token for ucas / empg; the RiskPO
      tracker's next state or None).
    """
    g, p = int(config.group_size), int(config.prompts_per_step)
    name = config.advantage.name
    opts = {k: v for k, v in dict(config.advantage.options).items()
            if k not in _EXTRA_OPTIONS.get(name, ())}  # fmt: skip
    group = dict(config.advantage.get("group_options", {}))
    r = np.asarray(rewards, np.float32).reshape(p, g)

    def flat(a):  # [p, g] -> [n]; [p, g, length] -> [n, length]
        a = np.asarray(a, np.float32)
        return a.reshape(p * g, *a.shape[2:])

    if name in ("grpo", "negative_only"):
        return flat(_OPTION_FNS[name](rewards=r, **opts)), None
    if name == "riskpo":
        b = int(config.advantage.options.get("bundle_size", 1))
        lr = float(config.advantage.options.get("tracker_lr", 0.1))
        rb = r.reshape(p // b, b, g)
        a = losses.riskpo_advantages(rewards=rb, tracker=tracker, **opts)
        if tracker is not None:
            tracker = losses.riskpo_tracker_update(
                tracker, losses.riskpo_paper_scores(rewards=rb), lr=lr
            )
        return np.asarray(a, np.float32).reshape(-1), tracker
    if name == "trust_grpo":
        if thinking is None:
            raise ValueError("advantage 'trust_grpo' needs the thinking rewards (thinking=)")
        combined = losses.trust_grpo_rewards(
            outcome=r, thinking=np.asarray(thinking, np.float32).reshape(p, g), step=step,
            **opts,
        )  # fmt: skip
        return flat(losses.grpo_advantages(rewards=combined, **group)), None
    if name == "steer":  # the token weights come from the current policy, in the loss
        return flat(losses.grpo_advantages(rewards=r, **group)), None
    if stats is None:
        raise ValueError(f"advantage {name!r} needs the rollout's token statistics (stats=)")
    m = np.asarray(stats["token_mask"], bool)
    if name == "ucas":  # its own group z-scores: no GRPO base
        cert = np.where(m, stats["certainty"], 0).sum(-1)
        a = losses.ucas_advantages(
            rewards=r, certainty=cert.reshape(p, g),
            sampled_logits=np.asarray(stats["sampled_logit"]).reshape(p, g, -1),
            mask=m.reshape(p, g, -1), **opts,
        )  # fmt: skip
        return flat(a), None
    # empg: per-step mean token entropy, modulated step advantages spread over their tokens
    ids = np.asarray(stats["step_ids"])
    steps = max(int(ids.max()) + 1, 1)
    onehot = (ids[..., None] == np.arange(steps)) & m[..., None]  # [n, length, steps]
    count = onehot.sum(1)
    ent = np.einsum("nl,nls->ns", np.where(m, stats["entropy"], 0), onehot)
    ent = ent / np.maximum(count, 1)
    a_step = np.asarray(
        losses.empg_advantages(
            advantages=flat(losses.grpo_advantages(rewards=r, **group)),
            step_entropy=ent,
            step_mask=count > 0,
            **opts,
        )  # fmt: skip
    )
    tok = np.take_along_axis(a_step, np.clip(ids, 0, steps - 1), axis=1)
    return np.where(m, tok, 0).astype(np.float32), None


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def _rollout_stats(params, tokens, valid, *, config, dtype):
    z = policy.logits(params, tokens, valid, config=config, dtype=dtype)
    _, entropy = policy.logprobs_of(z, tokens)
    z = z[:, :-1].astype(jnp.float32)
    certainty = losses.ucas_token_certainty(logits=z, validate=False)
    sampled = jnp.take_along_axis(z, tokens[:, 1:, None], axis=-1)[..., 0]
    return entropy, certainty, sampled


def step_ids(tokenizer, responses, *, prompt_len: int, width: int, delimiter="\n"):
    """[n, width - 1] the reasoning step (`sae.split_steps` with `delimiter`) of each response
    target in `pack`'s layout; -1 outside responses. Whitespace between steps joins the next
    step (trailing whitespace the last)."""
    out = np.full((len(responses), width - 1), -1, np.int32)
    for i, r in enumerate(responses):
        if not len(r):
            continue
        ends = [s.end for s in sae.split_steps(tokenizer, r, delimiter)] or [len(r) - 1]
        ids = np.searchsorted(np.asarray(ends), np.arange(len(r)))
        out[i, prompt_len - 1 : prompt_len - 1 + len(r)] = np.minimum(ids, len(ends) - 1)
    return out


def rollout_stats(lm, params, packed, responses, config) -> dict[str, np.ndarray]:
    """The token-level transforms' statistics of packed rollouts under `params` (one forward):
    [n, length] entropy, UCAS certainty and raw logit of each sampled token, token_mask, and
    for EMPG the step of each response token."""
    ent, cert, sampled = _rollout_stats(
        params, jnp.asarray(packed["tokens"]), jnp.asarray(packed["valid"]),
        config=lm.config, dtype=jnp.dtype(lm.dtype),
    )  # fmt: skip
    out = {
        "token_mask": packed["token_mask"],
        "entropy": np.asarray(ent, np.float32),
        "certainty": np.asarray(cert, np.float32),
        "sampled_logit": np.asarray(sampled, np.float32),
    }
    if config.advantage.name == "empg":
        out["step_ids"] = step_ids(
            lm.tokenizer, responses, prompt_len=int(config.max_prompt_tokens),
            width=packed["tokens"].shape[1],
            delimiter=config.advantage.options.get("step_delimiter", "\n"),
        )  # fmt: skip
    return out


_merged = jax.jit(lora.merged)
_token_logprobs = jax.jit(policy.token_logprobs, static_argnames=("config", "dtype"))


class RolloutFeed:
    """The loop's data iterator for on-policy training: each `next()` samples rollouts with
    the parameters of the state last passed to `bind` (the loop binds after every step).

    State (`get_state` / `set_state`, checkpointed by the loop): the step and, for RiskPO with
    a tracked quantile mode, the tracker.
    """

    def __init__(self, lm, prompts, examples, config, *, ref_params=None):
        if len(prompts) != len(examples):
            raise ValueError(f"got {len(prompts)} prompts but {len(examples)} examples")
        if len(prompts) < int(config.prompts_per_step):
            raise ValueError(
                f"{len(prompts)} prompts for prompts_per_step={config.prompts_per_step}"
            )
        self.lm = lm
        self.prompts = [list(map(int, p)) for p in lm.check_ids(prompts, "prompts")]
        lm.check_context(self.prompts, int(config.max_new_tokens))
        long = [i for i, p in enumerate(self.prompts) if len(p) > config.max_prompt_tokens]
        if long:
            raise ValueError(
                f"prompts {long[:5]} have more than config.max_prompt_tokens="
                f"{config.max_prompt_tokens} tokens"
            )
        self.examples = list(examples)
        self.config = config
        self.ref_params = ref_params
        self.params = None
        self.step = 0
        mode = config.advantage.options.get("quantile_mode", "batch")
        self.tracker = (
            losses.riskpo_tracker_init()
            if config.advantage.name == "riskpo" and mode != "batch"
            else None
        )
        self.last: dict = {}

    # -- the loop's protocol --------------------------------------------------------------
    def bind(self, state) -> None:
        self.params = _merged(state.params)  # LoRA: the merged parameters generate

    def get_state(self) -> dict:
        """JSON-able: the step, and the RiskPO tracker (floats round-trip exactly in JSON)."""
        out = {"step": int(self.step)}
        if self.tracker is not None:
            out["tracker_q"] = [float(v) for v in np.asarray(self.tracker["q"])]
            out["tracker_initialized"] = bool(self.tracker["initialized"])
        return out

    def set_state(self, state: Mapping) -> None:
        self.step = int(state["step"])
        if self.tracker is not None and "tracker_q" in state:
            self.tracker = {
                "q": jnp.asarray(state["tracker_q"], jnp.float32),
                "initialized": jnp.asarray(state["tracker_initialized"], bool),
            }

    def __iter__(self):
        return self

    def indices(self, step: int) -> np.ndarray:
        """The prompts of `step`: consecutive slices of a seeded permutation per epoch."""
        p, n = int(self.config.prompts_per_step), len(self.prompts)
        per_epoch = n // p
        epoch, k = divmod(step, per_epoch)
        order = np.random.default_rng([int(self.config.seed), epoch]).permutation(n)
        return order[k * p : (k + 1) * p]

    def __next__(self) -> dict[str, np.ndarray]:
        if self.params is None:
            raise RuntimeError("RolloutFeed.bind(state) must be called before the first batch")
        cfg, g = self.config, int(self.config.group_size)
        idx = self.indices(self.step)
        rows = [self.prompts[i] for i in idx for _ in range(g)]
        exs = [self.examples[i] for i in idx for _ in range(g)]
        gen = self.lm.with_params(self.params).generate(
            rows,
            max_new_tokens=int(cfg.max_new_tokens),
            temperature=float(cfg.temperature),
            top_p=float(cfg.top_p),
            top_k=int(cfg.top_k),
            seed=int(cfg.seed) * 1_000_003 + self.step,
            batch_size=len(rows),
            progress=False,
        )
        rew = compute_reward(cfg.reward.name, gen.texts, exs, cfg.reward.options)
        packed = policy.pack(
            rows,
            gen.tokens,
            prompt_len=int(cfg.max_prompt_tokens),
            response_len=int(cfg.max_new_tokens),
            pad_id=self.lm.stop_and_pad(())[1],
        )
        width = packed["tokens"].shape[1]
        name, opts = cfg.advantage.name, cfg.advantage.options
        thinking = (
            compute_reward(
                opts["thinking_reward"], gen.texts, exs, opts.get("thinking_options", {})
            )["reward"]
            if name == "trust_grpo"
            else None
        )
        stats = (
            rollout_stats(self.lm, self.params, packed, gen.tokens, cfg)
            if name in TOKEN_LEVEL
            else None
        )
        adv, tracker = advantages(
            rew["reward"], cfg, self.tracker, step=self.step, thinking=thinking, stats=stats
        )
        batch = {
            **packed,
            "old_logprobs": policy.place_targets(
                gen.logprobs, prompt_len=int(cfg.max_prompt_tokens), width=width
            ),
            "advantages": adv,
            # "correct" / "confidence" when the reward gives them (fixed for a run)
            **{k: v for k, v in rew.items() if k in ("reward", "correct", "confidence")},
        }
        if self.ref_params is not None:
            batch["ref_logprobs"] = np.asarray(
                _token_logprobs(
                    self.ref_params,
                    jnp.asarray(packed["tokens"]),
                    jnp.asarray(packed["valid"]),
                    config=self.lm.config,
                    dtype=jnp.dtype(self.lm.dtype),
                )[0],
                np.float32,
            )
        if self.tracker is not None:
            self.tracker = tracker
        self.last = {"texts": gen.texts, "indices": idx}
        self.step += 1
        return _host_rows(batch, len(rows))


def _host_rows(batch: dict, n: int) -> dict:
    """This host's rows [p * n / P, (p + 1) * n / P) of a global batch every host computed (all
    hosts sample every rollout, gathered, so group advantages see whole groups), as the loop
    expects from a data iterator (`train.data.host_rows`, `Batcher`'s split); the whole batch
    on one host."""
    if jax.process_count() == 1:
        return batch
    rows = host_rows(n)
    return {k: v[rows] for k, v in batch.items()}


def _nanmean(x):
    ok = jnp.isfinite(x)
    return jnp.sum(jnp.where(ok, x, 0)) / jnp.maximum(jnp.sum(ok), 1)


def _metrics(outputs, batch):
    """reward_mean, accuracy, Brier / ECE (10 bins) of stated confidence, response length,
    entropy of the policy over response tokens, KL to the reference."""
    m = batch["token_mask"].astype(jnp.float32)
    out = {
        "reward_mean": jnp.mean(batch["reward"]),
        "reward_std": jnp.std(batch["reward"]),
        "response_length": jnp.mean(jnp.sum(m, axis=1)),
        "entropy": jnp.sum(outputs["entropy"] * m) / jnp.maximum(jnp.sum(m), 1),
    }
    if "ref_logprobs" in batch:
        d = jnp.where(batch["token_mask"], batch["ref_logprobs"] - outputs["logprobs"], 0)
        out["kl"] = jnp.sum((jnp.exp(d) - d - 1) * m) / jnp.maximum(jnp.sum(m), 1)
    if "correct" not in batch:
        return out
    out["accuracy"] = jnp.mean(batch["correct"])
    if "confidence" not in batch:
        return out
    conf, y = batch["confidence"], batch["correct"]
    ok = jnp.isfinite(conf) & jnp.isfinite(y)
    conf, y = jnp.where(ok, conf, 0), jnp.where(ok, y, 0)
    sq = jnp.where(ok, (conf - y) ** 2, jnp.nan)
    out["brier"] = _nanmean(sq)  # over rows that state a confidence (0 if none)
    ece = metrics.ece(conf, y, num_bins=10, mask=ok, validate=False)
    out["ece"] = jnp.where(jnp.any(ok), ece, 0.0)  # 0 when no confidence is stated
    out["stated_rate"] = jnp.mean(ok.astype(jnp.float32))
    return out


def make_loss(lm, config):
    """The loop's loss_fn: the named policy loss on the policy's token log-probs (with STEER's
    token weights when config.advantage.name is "steer")."""
    model_config, dtype = lm.config, jnp.dtype(lm.dtype)

    steer = dict(config.advantage.options) if config.advantage.name == "steer" else None

    def forward(params, batch, rng):
        del rng
        lp, ent = policy.token_logprobs(
            params, batch["tokens"], batch["valid"], config=model_config, dtype=dtype
        )
        out = {"logprobs": lp, "entropy": jax.lax.stop_gradient(ent)}
        if steer is not None:  # STEER: weights from the current policy's entropy change
            out["token_weights"] = losses.steer_weights(
                logprobs=lp, old_logprobs=batch["old_logprobs"], entropy=out["entropy"],
                advantages=batch["advantages"], mask=batch["token_mask"], validate=False,
                **steer,
            )  # fmt: skip
        return out

    return losses.objective(forward, config.loss, metrics=_metrics, field="config.loss")


def train_grpo(
    lm,
    prompts: Sequence[Sequence[int]],
    examples: Sequence[Mapping],
    config=None,
    *,
    workdir: str,
    eval_fn=None,
) -> train_lib.TrainResult:
    """GRPO-train `lm`'s parameters on `prompts` (token ids; `examples` are what the reward
    reads, one per prompt) with the one training loop; resumable from `workdir`.

    Returns the loop's TrainResult (`.params`: the tuned parameters, in `lm`'s layout).
    Raises ValueError for a bad config (named field), prompts that do not fit.
    """
    cfg = grpo_config() if config is None else config
    check_config(cfg)
    kl = cfg.loss.options.get("kl_coef", 0.0)
    ref = lm.params if (cfg.loss.name == "clipped_policy" and float(kl) > 0) else None
    feed = RolloutFeed(lm, prompts, examples, cfg, ref_params=ref)
    return train_lib.train(
        lora.train_config(cfg),
        init_fn=lora.trainable_init(lm, cfg),
        loss_fn=make_loss(lm, cfg),
        data=feed,
        workdir=workdir,
        eval_fn=eval_fn,
        name="grpo.train",
    )
