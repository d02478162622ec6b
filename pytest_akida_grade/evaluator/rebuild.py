"""An exported model, rebuilt on the trusted side: validated JSON -> tf_keras model -> weights.

Nothing here imports or calls student code: the architecture is checked by schema.py before
tf_keras deserializes it, and the weights come from a plain .npz read without pickle.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pytest_akida_grade.catalog import INPUT_SHAPE, NUM_CLASSES
from pytest_akida_grade.evaluator.schema import REFUSED, Builtins, SchemaError, validate

WEIGHTS_BYTES = 512 << 20


class SubmissionError(Exception):
    """The submission (what its sandbox handed over) is at fault; the message is for it."""


@functools.cache
def builtins() -> Builtins:
    """tf_keras' own names, read off the installed tf_keras."""
    import tf_keras as keras

    def classes(module: Any, base: type) -> frozenset[str]:
        return frozenset(name for name, obj in vars(module).items()
                         if isinstance(obj, type) and issubclass(obj, base))

    def lowercase(module: Any) -> frozenset[str]:
        return frozenset(name for name, obj in vars(module).items()
                         if callable(obj) and name.islower() and not name.startswith("_")
                         and name not in ("get", "serialize", "deserialize"))

    return Builtins(
        layers=classes(keras.layers, keras.layers.Layer) - set(REFUSED) - {"Layer"},
        initializers=(classes(keras.initializers, keras.initializers.Initializer)
                      | lowercase(keras.initializers)) - {"Initializer"},
        regularizers=(classes(keras.regularizers, keras.regularizers.Regularizer)
                      | lowercase(keras.regularizers)) - {"Regularizer"},
        constraints=(classes(keras.constraints, keras.constraints.Constraint)
                     | lowercase(keras.constraints)) - {"Constraint"},
        activations=lowercase(keras.activations))


def rebuild(architecture: Path, weights: Path) -> Any:
    """The model the sandbox exported, checked for the assignment's input and output."""
    import tf_keras as keras

    try:
        validate(architecture.read_text(encoding="utf-8"), builtins())
    except (SchemaError, UnicodeDecodeError) as error:
        raise SubmissionError(str(error)) from None
    try:
        model = keras.models.model_from_json(architecture.read_text(encoding="utf-8"))
    except Exception as error:  # a config tf_keras itself refuses: the submission's problem
        raise SubmissionError(f"the exported architecture cannot be rebuilt by tf_keras "
                              f"({type(error).__name__}: {error})") from None
    check_model(model)
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
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if any(m.compress_type != zipfile.ZIP_STORED or m.file_size > WEIGHTS_BYTES
                   for m in members) or sum(m.file_size for m in members) > WEIGHTS_BYTES:
                raise SubmissionError("the exported weights are not a plain .npz of arrays")
        with np.load(path, allow_pickle=False) as loaded:
            names = [f"arr_{i}" for i in range(len(loaded.files))]
            if sorted(loaded.files) != sorted(names):
                raise SubmissionError("the exported weights are not a list of arrays")
            arrays = [loaded[name] for name in names]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise SubmissionError(f"the exported weights cannot be read ({error})") from None
    shapes = [tuple(a.shape) for a in arrays]
    if shapes != expected or any(a.dtype.kind != "f" for a in arrays):
        raise SubmissionError(f"the exported weights do not fit the architecture: {len(arrays)} "
                              f"arrays of shapes {shapes[:6]}..., the model needs "
                              f"{len(expected)} of shapes {expected[:6]}...")
    return arrays
