"""Hidden-state probes (LYNX exit probes, correctness models) and their training.

    from introspect import probes
    store = probes.build_store(dir, examples, extract_fn, meta=...)   # extract once, on disk
    fit = probes.fit_probe(probe_cfg, train_cfg, probes.Subset(store, train_idx), workdir=...)
    p = probes.predict(fit.model, fit.variables, probes.Subset(store, val_idx))

Features: positions (`select_positions`, `cue_positions`), extraction from `lm.forward`
(`extract_forward`) and `lm.generate` (`generation_features`), the `.npy`-shard store
(`build_store`, `FeatureStore`, `Subset`). Models: `LogisticProbe`, `MLPProbe` (registry
`PROBES`), `feature_stats`, `class_weights`, `l2_penalty`. Training (loss by name,
`probe.loss.name`):
`fit_probe` (through `introspect.train`), `predict`, `save_probe`/`load_probe` (orbax).
Exits (LYNX): `CueMatcher` (cue tokens, the same automaton online and post hoc), `ExitRule`
(probe + Mondrian conformal thresholds; `lm.generate(exit_rule=...)` exits inside the compiled
loop), `scan_exits` (the post-hoc scan of finished traces).
"""

from introspect.probes.cues import CueMatcher, token_pieces, vocab_tables
from introspect.probes.exit import (
    ExitRule,
    ExitScan,
    evaluable_cues,
    first_exits,
    scan_exits,
)
from introspect.probes.features import (
    POSITION_KINDS,
    FeatureStore,
    Subset,
    build_store,
    cue_positions,
    extract_forward,
    generation_features,
    select_positions,
    token_char_ends,
)
from introspect.probes.models import (
    PROBES,
    LogisticProbe,
    MLPProbe,
    class_weights,
    feature_stats,
    l2_penalty,
    make_probe,
)
from introspect.probes.sep import best_split, fit_sep, sep_confidence, sep_labels, sep_train_config
from introspect.probes.training import (
    ProbeFit,
    build_model,
    default_probe_config,
    fit_probe,
    load_probe,
    predict,
    resolve_probe_config,
    save_probe,
)

__all__ = [
    "best_split",
    "fit_sep",
    "sep_confidence",
    "sep_labels",
    "sep_train_config",
    "CueMatcher",
    "ExitRule",
    "ExitScan",
    "evaluable_cues",
    "first_exits",
    "scan_exits",
    "token_pieces",
    "vocab_tables",
    "POSITION_KINDS",
    "PROBES",
    "FeatureStore",
    "LogisticProbe",
    "MLPProbe",
    "ProbeFit",
    "Subset",
    "build_model",
    "build_store",
    "class_weights",
    "cue_positions",
    "default_probe_config",
    "extract_forward",
    "feature_stats",
    "fit_probe",
    "generation_features",
    "l2_penalty",
    "load_probe",
    "make_probe",
    "predict",
    "resolve_probe_config",
    "save_probe",
    "select_positions",
    "token_char_ends",
]
