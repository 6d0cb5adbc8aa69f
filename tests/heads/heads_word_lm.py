"""Tiny random decoders with a word-level tokenizer, built in memory (no files, no reference model):
enough for the heads' data builders and feature extractors, and fast to compile. Imported by the
FineCE and GCM tests (this directory is on sys.path under pytest's default import mode)."""

WORDS = (
    "<unk> <pad> <eos> question answer : ? the is it yes no maybe one two three four five six "
    "seven eight nine ten what plus minus equals i think sure not"
).split()


def make_word_lm(
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    *,
    words=WORDS,
    specials: dict | None = None,
    max_positions: int = 256,
    name: str | None = None,
):
    """An `introspect.models.LM` with random weights over a word vocabulary (`words`, ids in
    order); `specials` maps the tokenizer's special roles to words (default: this module's
    eos / pad / unk)."""
    import tokenizers
    from tokenizers import decoders, pre_tokenizers
    from tokenizers import models as tok_models

    from introspect.models import LM, ModelConfig, Tokenizer

    roles = specials or {"eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
    backend = tokenizers.Tokenizer(
        tok_models.WordLevel(
            {w: i for i, w in enumerate(words)},
            unk_token=roles.get("unk_token", roles["pad_token"]),
        )
    )
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens([w for r, w in roles.items() if r != "unk_token"])
    tok = Tokenizer(backend, **roles)
    cfg = ModelConfig(
        vocab_size=len(words),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_layers=layers,
        num_heads=4,
        num_kv_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=max_positions,
    )
    return LM(cfg, random_params(cfg, seed), tok, name=name or f"word-lm-{seed}")


def random_params(cfg, seed: int):
    """Decoder parameters drawn with numpy (shapes from `jax.eval_shape`, so nothing compiles):
    norm scales 1, embeddings N(0, 1), kernels N(0, 1 / fan_in)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from introspect.models import Decoder

    x = jnp.zeros((1, 4), jnp.int32)
    shapes = jax.eval_shape(
        lambda: Decoder(cfg).init(jax.random.PRNGKey(0), x, jnp.arange(4)[None], x == 0)
    )["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['scale']"):
            return np.ones(leaf.shape, np.float32)
        std = 1.0 if "embed" in name else leaf.shape[0] ** -0.5
        return (std * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)
