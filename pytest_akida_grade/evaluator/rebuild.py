"""An exported model, rebuilt on the trusted side: validated JSON -> tf_keras model -> weights.

Nothing here imports or calls student code. Only a configuration pipeline's gate accepted (the
closed list of schema.py, the budgets of rules/architecture.py) is rebuilt by tf_keras; the
weights come from a plain .npz read without pickle, and must be finite numbers of a sane size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pytest_akida_grade import codec
from pytest_akida_grade.assignment import INPUT_SHAPE, NUM_CLASSES

WEIGHTS_BYTES = 512 << 20
# Beyond this a weight cannot be a trained MNIST model's, and quantizing it overflows the
# quantizers' ranges (TensorFlow then fails an assertion deep inside quantizeml).
HUGE = 1e9


class SubmissionError(Exception):
    """The submission (what its sandbox handed over) is at fault; the message is for it."""


class NotRebuilt(SubmissionError):
    """The model loads (its JSON is read and judged) but the grader will not rebuild it."""


class BadNumbers(SubmissionError):
    """The weights fit the model but are not numbers a trained model has (NaN, inf, huge)."""


def rebuilt(config: dict[str, Any], weights: Path | None) -> Any:
    """tf_keras' rebuild of a configuration `why_not_rebuilt` accepted, with its weights (None:
    as initialized, for the Akida 1.0 fit, which does not depend on them)."""
    import tf_keras as keras

    try:
        model = keras.models.model_from_json(json.dumps(config))
    except Exception as error:  # a config tf_keras itself refuses: the submission's problem
        raise SubmissionError(f"the exported architecture cannot be rebuilt by tf_keras "
                              f"({type(error).__name__}: {error})") from None
    check_model(model)
    if weights is not None:
        model.set_weights(_weights(weights, model))
    return model


def check_model(model: Any) -> None:
    if not model.built or len(model.inputs or []) != 1:
        raise SubmissionError(
            "the model has no single defined input: give the first layer "
            "input_shape=(28, 28, 1) as the template does")
    if tuple(model.input_shape[1:]) != INPUT_SHAPE:
        raise SubmissionError(
            f"the model's input shape is {tuple(model.input_shape[1:])}, "
            f"MNIST needs {INPUT_SHAPE}: use input_shape=(28, 28, 1)")
    if tuple(model.output_shape[1:]) != (NUM_CLASSES,):
        raise SubmissionError(
            f"the model's output shape is {tuple(model.output_shape[1:])}, "
            "MNIST needs 10 outputs: end with Flatten() and Dense(10)")


def _weights(path: Path, model: Any) -> list[np.ndarray[Any, Any]]:
    """The exported arrays, in the model's order, of exactly the model's shapes."""
    expected = [tuple(w.shape) for w in model.weights]
    try:
        arrays = codec.arrays(path, what="the exported weights file", limit=WEIGHTS_BYTES)
    except codec.RecordError as error:
        raise SubmissionError(str(error)) from None
    shapes = [tuple(a.shape) for a in arrays]
    if shapes != expected or any(a.dtype.kind != "f" for a in arrays):
        raise SubmissionError(f"the exported weights do not fit the architecture: {len(arrays)} "
                              f"arrays of shapes {shapes[:6]}..., the model needs "
                              f"{len(expected)} of shapes {expected[:6]}...")
    for array, weight in zip(arrays, model.weights, strict=True):
        problem = number_problem(array)
        if problem:
            layer, _, kind = weight.name.partition("/")
            raise BadNumbers(f"the weights of layer '{layer}' ({kind.split(':')[0]}) {problem}")
    return arrays


def number_problem(array: np.ndarray[Any, Any]) -> str | None:
    """Why these numbers cannot be a trained model's, in the student's words; None if fine."""
    if np.isnan(array).any():
        return ("contain NaN: training diverged (try a lower learning rate, or check your "
                "train() or weights file)")
    if np.isinf(array).any():
        return ("contain infinite values: training diverged (try a lower learning rate, or "
                "check your train() or weights file)")
    largest = float(np.abs(array).max()) if array.size else 0.0
    if largest > HUGE:
        return (f"reach {largest:.3g}: far too large to quantize to a few bits (a trained MNIST "
                "model's weights are small numbers); training diverged, or the weights file "
                "is not this model's")
    return None
