"""Post-hoc calibrators, each a pair of pure functions `fit(...) -> params` and
`apply(params, ...) -> calibrated`.

Multiclass logits [n, K] (or binary logits [n]): `temperature`, `vector_scaling`,
`matrix_scaling`. Binary scores [n] with 0/1 labels: `platt`, `isotonic`, `histogram`
(histogram binning, scores in [0, 1]). The modules are importable as
`introspect.calibrators.<name>` with `fit`/`apply`, and the pairs are also exported as
`fit_<name>` / `apply_<name>` and listed by name in `CALIBRATORS`.
"""

from introspect.calibrators import (
    histogram,
    isotonic,
    matrix_scaling,
    platt,
    temperature,
    vector_scaling,
)
from introspect.calibrators.histogram import HistogramBinningParams
from introspect.calibrators.isotonic import IsotonicParams, pava
from introspect.calibrators.matrix_scaling import MatrixScalingParams
from introspect.calibrators.platt import PlattParams
from introspect.calibrators.temperature import TemperatureParams
from introspect.calibrators.vector_scaling import VectorScalingParams

fit_temperature, apply_temperature = temperature.fit, temperature.apply
fit_vector_scaling, apply_vector_scaling = vector_scaling.fit, vector_scaling.apply
fit_matrix_scaling, apply_matrix_scaling = matrix_scaling.fit, matrix_scaling.apply
fit_platt, apply_platt = platt.fit, platt.apply
fit_isotonic, apply_isotonic = isotonic.fit, isotonic.apply
fit_histogram_binning, apply_histogram_binning = histogram.fit, histogram.apply

# name -> (fit, apply), for configs.
CALIBRATORS = {
    "temperature": (temperature.fit, temperature.apply),
    "vector_scaling": (vector_scaling.fit, vector_scaling.apply),
    "matrix_scaling": (matrix_scaling.fit, matrix_scaling.apply),
    "platt": (platt.fit, platt.apply),
    "isotonic": (isotonic.fit, isotonic.apply),
    "histogram_binning": (histogram.fit, histogram.apply),
}

__all__ = [
    "CALIBRATORS",
    "HistogramBinningParams",
    "IsotonicParams",
    "MatrixScalingParams",
    "PlattParams",
    "TemperatureParams",
    "VectorScalingParams",
    "apply_histogram_binning",
    "apply_isotonic",
    "apply_matrix_scaling",
    "apply_platt",
    "apply_temperature",
    "apply_vector_scaling",
    "fit_histogram_binning",
    "fit_isotonic",
    "fit_matrix_scaling",
    "fit_platt",
    "fit_temperature",
    "fit_vector_scaling",
    "histogram",
    "isotonic",
    "matrix_scaling",
    "pava",
    "platt",
    "temperature",
    "vector_scaling",
]
