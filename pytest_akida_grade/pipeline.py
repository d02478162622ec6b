"""The grading pipeline: the assignment's own TensorFlow / quantizeml / cnn2snn / akida calls.

Runs only in the child process (see worker.py), never in the pytest process: it imports student
code. Each function does one step of the assignment and raises SubmissionError with a message a
student understands when the submission is at fault.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class SubmissionError(Exception):
    """The student's submission is at fault; the message is for the student."""


# ---------------------------------------------------------------------------- the submission


def import_submission(path: Path) -> ModuleType:
    """Import the student's module by path, under a name that cannot clash with ours."""
    name = f"akida_submission_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SubmissionError(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise SubmissionError(
            f"{path.name} has a syntax error on line {error.lineno}: {error.msg}"
        ) from None
    except BaseException as error:  # SystemExit included: a student's exit() is their failure
        raise SubmissionError(
            f"importing {path.name} raised {_student_traceback(error, path)}"
        ) from None
    return module


def _student_traceback(error: BaseException, path: Path) -> str:
    """The exception with only the frames in the student's file: no harness noise."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == str(path)]
    where = "".join(f"\n  {path.name}, line {f.lineno}, in {f.name}: {f.line}" for f in frames)
    return f"{type(error).__name__}: {error}{where}"


def declared_bits(module: ModuleType) -> tuple[Any, Any]:
    """WEIGHT_BITS / ACTIVATION_BITS module constants, 4 and 4 when absent."""
    return getattr(module, "WEIGHT_BITS", 4), getattr(module, "ACTIVATION_BITS", 4)


def build_model(module: ModuleType, path: Path) -> Any:
    """Call build_model() and check the result is a tf_keras model of the right shape."""
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise SubmissionError(f"{path.name} has no build_model() function")
    try:
        model = build()
    except BaseException as error:
        raise SubmissionError(f"build_model() raised {_student_traceback(error, path)}") from None
    check_model(model)
    return model


def _is_keras3(obj: object) -> bool:
    return any(c.__module__.split(".")[0] == "keras" for c in type(obj).__mro__)


def check_model(model: object) -> None:
    import tf_keras as keras

    if not isinstance(model, keras.Model):
        if _is_keras3(model):
            raise SubmissionError(
                "build_model() returned a Keras 3 model (from `import keras` or "
                "`tensorflow.keras`); the Akida tools only accept tf_keras models: write "
                "`import tf_keras as keras`"
            )
        raise SubmissionError(
            f"build_model() returned {type(model).__name__}, not a tf_keras model "
            "(did you forget `return model`?)"
        )
    if not model.built or len(model.inputs or []) != 1:
        raise SubmissionError(
            "the model has no single defined input: give the first layer "
            "input_shape=(28, 28, 1) as the template does"
        )
    if tuple(model.input_shape[1:]) != INPUT_SHAPE:
        raise SubmissionError(
            f"the model's input shape is {tuple(model.input_shape[1:])}, "
            f"MNIST needs {INPUT_SHAPE}: use input_shape=(28, 28, 1)"
        )
    if tuple(model.output_shape[1:]) != (NUM_CLASSES,):
        raise SubmissionError(
            f"the model's output shape is {tuple(model.output_shape[1:])}, "
            "MNIST needs 10 outputs: end with Flatten() and Dense(10)"
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, np.ndarray | np.generic):  # ReLU stores max_value as a 0-d array
        return value.tolist()
    return repr(value)


def _shape(shape: Any) -> list[Any]:
    if isinstance(shape, list) and shape and isinstance(shape[0], tuple):
        shape = shape[0]
    return [d for d in list(shape)[1:]]


def layer_specs(model: Any) -> list[dict[str, Any]]:
    """The layers as plain data (docs/contracts.md) for the pure rules."""
    return [
        {
            "index": index,
            "name": layer.name,
            "class_name": type(layer).__name__,
            "config": _json_safe(layer.get_config()),
            "input_shape": _shape(layer.input_shape),
            "output_shape": _shape(layer.output_shape),
        }
        for index, layer in enumerate(model.layers)
    ]


# ---------------------------------------------------------------------------- quantize, convert


@dataclass
class Conversion:
    quantized: Any = None  # the quantized Keras model
    akida: Any = None  # the converted akida.Model
    warnings: list[str] = field(default_factory=list)
    cut_at: str | None = None  # where quantization/conversion silently stopped


QUANTIZE_STOP = re.compile(r"'([^']+)' of type (\w+) is not supported to quantize")
CONVERT_STOP = re.compile(r"Conversion stops\s+at layer (\S+)")


def quantize_model(model: Any, weight_bits: int, activation_bits: int, samples: np.ndarray,
                   batch_size: int = 64) -> tuple[Any, list[str]]:
    """The assignment's quantize() call, per-tensor (mandatory for Akida 1.0), on real images."""
    from quantizeml.models import QuantizationParams, quantize

    qparams = QuantizationParams(input_weight_bits=8, weight_bits=weight_bits,
                                 activation_bits=activation_bits, per_tensor_activations=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized = quantize(model, qparams=qparams, samples=samples.astype("float32"),
                             num_samples=len(samples), batch_size=batch_size, epochs=1)
    return quantized, [str(w.message) for w in caught]


def convert_v1(quantized: Any) -> tuple[Any, list[str]]:
    """The assignment's convert() call under Akida 1.0."""
    from cnn2snn import AkidaVersion, convert, set_akida_version

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with set_akida_version(AkidaVersion.v1):
            converted = convert(quantized)
    return converted, [str(w.message) for w in caught]


def quantize_and_convert(model: Any, weight_bits: int, activation_bits: int,
                         samples: np.ndarray) -> Conversion:
    """Quantize then convert; a silent stop (only a warning upstream) is recorded in cut_at."""
    result = Conversion()
    result.quantized, q_warnings = quantize_model(model, weight_bits, activation_bits, samples)
    result.akida, c_warnings = convert_v1(result.quantized)
    result.warnings = q_warnings + c_warnings
    result.cut_at = find_cut(result.akida, result.warnings)
    return result


def find_cut(converted: Any, messages: list[str]) -> str | None:
    """Where the pipeline silently stopped, when the Akida model does not output 10 classes."""
    if int(np.prod(converted.output_shape)) == NUM_CLASSES:
        return None
    for message in messages:
        if match := QUANTIZE_STOP.search(message):
            return (f"quantization stopped at layer '{match.group(1)}' ({match.group(2)}): "
                    "quantizeml cannot quantize it, so everything after it was left out")
    for message in messages:
        if match := CONVERT_STOP.search(message):
            return (f"conversion stopped at layer '{match.group(1)}': cnn2snn ignored the "
                    "rest of the model")
    return f"the converted model outputs {list(converted.output_shape)} instead of 10 classes"


# ---------------------------------------------------------------------------- mapping


@dataclass
class Mapping:
    error: str | None
    nps: int = 0
    hardware_sequences: int = 0
    software_sequences: int = 0
    program_memory_bytes: int = 0  # static: what the programs need in device memory


def map_on_virtual_akd1000(converted: Any) -> Mapping:
    """Map onto a virtual AKD1000 in one hardware sequence: the hardware-fit truth."""
    import akida

    try:
        converted.map(akida.AKD1000(), hw_only=True)
    except Exception as error:  # the mapper's RuntimeError/ValueError is the verdict
        return Mapping(error=str(error).strip())
    try:
        return _mapping_figures(converted)
    finally:
        converted.map(None)  # back to the software engine for inference


def _mapping_figures(converted: Any) -> Mapping:
    import akida

    figures = Mapping(error=None)
    for sequence in converted.sequences:
        if sequence.backend != akida.BackendType.Hardware:
            figures.software_sequences += 1
            continue
        figures.hardware_sequences += 1
        info = akida.get_program_memory_infos(sequence.program)
        figures.program_memory_bytes += sum(
            getattr(info, name) for name in (
                "input_memory", "input_descriptor_memory", "output_memory", "program_memory",
                "extra_program_memory", "program_descriptors_memory"))
        figures.nps += sum(
            len(layer.mapping.nps) for part in sequence.passes for layer in part.layers
            if layer.mapping is not None)
    return figures


# ---------------------------------------------------------------------------- training


def with_channel(x: np.ndarray) -> np.ndarray:
    return x[..., np.newaxis] if x.ndim == 3 else x


def train_default(model: Any, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, Any],
                  *, epochs: int, batch_size: int, seed: int,
                  progress: Callable[[str], None]) -> None:
    """The default recipe: seeded Adam on sparse cross-entropy from logits."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(with_channel(x).astype("float32"), y, epochs=epochs, batch_size=batch_size,
              validation_data=(with_channel(validation[0]).astype("float32"), validation[1]),
              verbose=0, callbacks=[_ProgressCallback(progress, epochs)])


def _ProgressCallback(progress: Callable[[str], None], epochs: int) -> Any:
    import tf_keras as keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            progress(f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, "
                     f"accuracy {logs.get('accuracy', float('nan')):.4f}, "
                     f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f}")

    return Progress()


def train_with_student_function(module: ModuleType, path: Path, model: Any, x: np.ndarray,
                                y: np.ndarray) -> Any:
    """The student's own train(model, x_train, y_train); it may return the trained model."""
    try:
        returned = module.train(model, with_channel(x).astype("float32"), y)
    except BaseException as error:
        raise SubmissionError(f"train() raised {_student_traceback(error, path)}") from None
    import tf_keras as keras

    if isinstance(returned, keras.Model):
        check_model(returned)
        return returned
    return model


def load_weights(model: Any, weights: Path) -> None:
    try:
        model.load_weights(str(weights))
    except Exception as error:
        if weights.name.endswith(".weights.h5") and _load_legacy_h5(model, weights):
            return
        raise SubmissionError(
            f"{weights.name} does not fit the model build_model() returns ({error}); "
            "save it with model.save_weights() from the same architecture, or delete it"
        ) from None


def _load_legacy_h5(model: Any, weights: Path) -> bool:
    """tf_keras reads `*.weights.h5` as the Keras 3 format; a renamed legacy .h5 is fine too."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        legacy = Path(scratch) / "weights.h5"
        shutil.copyfile(weights, legacy)
        try:
            model.load_weights(str(legacy))
        except Exception:
            return False
    return True


# ---------------------------------------------------------------------------- evaluation


def keras_accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 100) -> float:
    """The assignment's evaluation: argmax of the Keras model's outputs."""
    outputs = model.predict(with_channel(x).astype("float32"), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(outputs.reshape(len(x), -1), axis=1) == y))


def akida_accuracy(converted: Any, x: np.ndarray, y: np.ndarray) -> float:
    """The akida software engine: the accuracy the chip computes, on the CPU."""
    outputs = converted.predict(with_channel(x).astype("uint8"))
    return float(np.mean(np.argmax(outputs.reshape(len(x), -1), axis=1) == y))
