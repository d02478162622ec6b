"""The assignment's TensorFlow / quantizeml / cnn2snn / akida calls, on a rebuilt model.

Runs only in the trusted evaluator (server.py), never in the pytest process and never next to
student code. Three jobs, each returning a typed result (results.py):
- inspect: layer specs, the rules, and the untrained model quantized, converted and mapped on a
  virtual AKD1000 (the Akida 1.0 fit does not depend on trained weights);
- train: the default recipe (seeded Adam) on the training split, with validation figures;
- grade: float / quantized / Akida accuracy on the test set, the mapping, the .fbz.
"""

from __future__ import annotations

import json
import math
import re
import resource
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_akida_grade import catalog
from pytest_akida_grade.assignment import NUM_CLASSES, SUPPORTED_SCHEMES
from pytest_akida_grade.background import OnProgress
from pytest_akida_grade.data import Split
from pytest_akida_grade.evaluator import jobs
from pytest_akida_grade.evaluator.rebuild import (
    HUGE,
    BadNumbers,
    NotRebuilt,
    SubmissionError,
    number_problem,
    rebuilt,
)
from pytest_akida_grade.evaluator.schema import ARCHITECTURE_BYTES, SchemaError, parse, refusal
from pytest_akida_grade.quality import argmax_accuracy
from pytest_akida_grade.results import (
    Built,
    Declared,
    Graded,
    MappingFigures,
    Route,
    V1Truth,
    Violation,
)
from pytest_akida_grade.rules import architecture, mapper
from pytest_akida_grade.rules.architecture import budget_problem, parameters
from pytest_akida_grade.rules.specs import Specs, describe

Array = np.ndarray[Any, Any]
QUANTIZE_STOP = re.compile(r"'([^']+)' of type (\w+) is not supported to quantize")
CONVERT_STOP = re.compile(r"Conversion stops\s+at layer (\S+)")
FIT_SAMPLES = 64  # random images that calibrate the untrained model's quantization


# ---------------------------------------------------------------------------- the gate


def exported(path: Path) -> tuple[dict[str, Any], Specs]:
    """The handed-over architecture as data and its layer specs (nothing deserialized)."""
    try:
        if path.stat().st_size > ARCHITECTURE_BYTES:
            raise SchemaError("the exported architecture is too large to grade")
        config = parse(path.read_text(encoding="utf-8"))
    except (SchemaError, UnicodeDecodeError, OSError) as error:
        raise SubmissionError(str(error)) from None
    return config, architecture.layer_specs(config)


def why_not_rebuilt(config: dict[str, Any], specs: Specs) -> str | None:
    """The closed list, then the budgets: None when tf_keras may rebuild the model."""
    return refusal(config, specs) or budget_problem(specs)


def rebuild(architecture: Path, weights: Path) -> tuple[Any, Specs]:
    """The model the sandbox exported, checked for the assignment's input and output, and its
    layer specs (the JSON read once)."""
    config, specs = exported(architecture)
    why = why_not_rebuilt(config, specs)
    if why is not None:
        raise NotRebuilt(f"the grader does not rebuild this model: {why}")
    return rebuilt(config, weights), specs


# ---------------------------------------------------------------------------- inspect


def inspect(architecture: Path, weights: Path, weight_bits: Declared,
            activation_bits: Declared, route: Route, seed: int,
            samples: Array | None = None) -> Built:
    """The fast checks' evidence: specs, every rule's violations, the Akida 1.0 truth.

    `samples` calibrate the quantization (a pre-trained model: the grade's first calibration);
    without them, seeded random images do (an untrained model). A model the grader does not
    rebuild is judged on its JSON alone."""
    if samples is None:
        random = np.random.default_rng(seed).integers(0, 256, (FIT_SAMPLES, 28, 28, 1))
        samples = random.astype("uint8")
    config, layers = exported(architecture)
    why = why_not_rebuilt(config, layers)
    if why is not None:
        return _not_rebuilt(layers, weight_bits, activation_bits, route, why)
    model, _ = _with_weights(config, weights)
    return _inspected(model, layers, weight_bits, activation_bits, route, samples)[0]


def inspect_and_grade(job: jobs.InspectAndGrade, data: Split,
                      progress: OnProgress) -> tuple[Built, Graded | str]:
    """Both for a pre-trained model: the Akida 1.0 truth is the grade's first conversion, made
    once. The same figures as `inspect` with the same samples, then `grade`."""
    seen, grade_job = job.inspect, job.grade
    config, layers = exported(Path(seen.architecture))
    why = why_not_rebuilt(config, layers)
    if why is not None:
        return (_not_rebuilt(layers, seen.weight_bits, seen.activation_bits, seen.route, why),
                f"the grader does not rebuild this model: {why}")
    model, bad_numbers = _with_weights(config, Path(seen.weights))
    built, shared = _inspected(
        model, layers, seen.weight_bits, seen.activation_bits, seen.route,
        first_calibration(data, grade_job.calibration_samples, grade_job.seed))
    if bad_numbers is not None:
        return built, bad_numbers
    try:
        return built, _grade(model, layers, data, grade_job, progress, first=shared)
    except SubmissionError as error:
        return built, str(error)


def _with_weights(config: dict[str, Any], weights: Path) -> tuple[Any, str | None]:
    """The rebuilt model with its weights; or as initialized, with why its weights are unusable
    (NaN, huge: the Akida 1.0 fit does not depend on them, the grade does)."""
    try:
        return rebuilt(config, weights), None
    except BadNumbers as error:
        return rebuilt(config, None), str(error)


def _not_rebuilt(layers: Specs, weight_bits: Declared, activation_bits: Declared, route: Route,
                 why: str) -> Built:
    """The rules' verdicts on the JSON of a model the grader does not rebuild."""
    bits, declared = checked_bits(weight_bits, activation_bits)
    return Built(layers=tuple(layers), params=sum(parameters(layer) or 0 for layer in layers),
                 weight_bits=weight_bits, activation_bits=activation_bits,
                 violations=_violations(layers, weight_bits, activation_bits, bits),
                 v1=V1Truth(bits, declared), route=route, not_rebuilt=why)


def _inspected(model: Any, layers: Specs, weight_bits: Declared, activation_bits: Declared,
               route: Route, samples: Array) -> tuple[Built, Conversion | None]:
    """The build's evidence, and its conversion when it is the grade's own first one (made at
    the declared, supported precision)."""
    bits, declared = checked_bits(weight_bits, activation_bits)
    conversion = _converted(model, layers, bits, samples)
    built = Built(layers=tuple(layers), params=int(model.count_params()),
                  weight_bits=weight_bits, activation_bits=activation_bits,
                  violations=_violations(layers, weight_bits, activation_bits, bits),
                  v1=_v1_truth(layers, bits, declared, conversion), route=route)
    return built, conversion if declared and not isinstance(conversion, str) else None


def checked_bits(weight_bits: Declared, activation_bits: Declared) -> tuple[tuple[int, int], bool]:
    """The precision the Akida 1.0 truth is checked at: the declared one when supported."""
    scheme = (weight_bits, activation_bits)
    declared = scheme in SUPPORTED_SCHEMES and all(type(b) is int for b in scheme)
    return ((int(scheme[0]), int(scheme[1])) if declared else (4, 4)), declared  # type: ignore[arg-type]


def first_calibration(data: Split, calibration_samples: int, seed: int) -> Array:
    """The grade's first attempt's calibration images (a seeded sample of the training split)."""
    rng = np.random.default_rng(seed)
    count = min(calibration_samples, len(data.x_fit))
    return _images(data.x_fit[rng.choice(len(data.x_fit), count, replace=False)])


def _violations(layers: Specs, weight_bits: Declared, activation_bits: Declared,
                bits: tuple[int, int]) -> dict[str, tuple[Violation, ...]]:
    """The rules' verdicts (Akida 1.0's at the precision the truth is checked at)."""
    return catalog.violations(catalog.Submitted(layers, weight_bits, activation_bits, bits))


def _converted(model: Any, layers: Specs, bits: tuple[int, int],
               samples: Array) -> Conversion | str:
    """The conversion, or why quantizeml / cnn2snn refused it: a layer whose numbers are not
    finite or out of range first (the tools then blame a later layer), else their words
    explained."""
    try:
        return quantize_and_convert(model, bits[0], bits[1], samples)
    except Exception as error:  # quantizeml/cnn2snn refusing the model is the verdict
        said = f"{type(error).__name__}: {str(error).strip()}"
        numbers = numbers_problem(model, layers, samples)
        return f"{numbers} (the Akida tools said: {said})" if numbers \
            else mapper.explain_conversion_error(said, layers)


def numbers_problem(model: Any, layers: Specs, x: Array) -> str | None:
    """The first layer whose weights, or outputs on the images `x`, are not finite or beyond
    HUGE, in the student's words; None when every layer's numbers are sane."""
    import tf_keras as keras

    probe = keras.Model(model.inputs, [layer.output for layer in model.layers])
    outputs = probe.predict(_images(x[:FIT_SAMPLES]).astype("float32"), verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    for spec, layer, output in zip(layers, model.layers, outputs, strict=False):
        for weight in layer.get_weights():
            if (problem := number_problem(np.asarray(weight))) is not None:
                return f"the weights of {describe(spec)} {problem}"
        with np.errstate(invalid="ignore", over="ignore"):
            largest = float(np.abs(output).max()) if np.size(output) else 0.0
        if not np.isfinite(output).all() or largest > HUGE:
            return mapper.overflowing(spec, largest if np.isfinite(output).all() else math.inf,
                                      HUGE)
    return None


def _v1_truth(layers: list[dict[str, Any]], bits: tuple[int, int], declared: bool,
              conversion: Conversion | str) -> V1Truth:
    if isinstance(conversion, str):
        return V1Truth(bits, declared, conversion_error=conversion)
    return V1Truth(bits, declared, cut_at=conversion.cut_at,
                   warnings=tuple(conversion.warnings[:20]),
                   mapping=map_on_virtual_akd1000(conversion.akida, layers))


def layer_specs(model: Any) -> Specs:
    """A built model's layer specs: the same as its exported JSON's (one source of specs)."""
    return architecture.layer_specs(json.loads(model.to_json()))


# ---------------------------------------------------------------------------- quantize, convert


@dataclass
class Conversion:
    quantized: Any = None  # the quantized Keras model
    akida: Any = None  # the converted akida.Model
    warnings: list[str] = field(default_factory=list)
    cut_at: str | None = None  # where quantization/conversion silently stopped


def quantize_and_convert(model: Any, weight_bits: int, activation_bits: int,
                         samples: Array) -> Conversion:
    """The assignment's quantize() (per-tensor, calibrated on `samples`) and convert() calls."""
    from cnn2snn import AkidaVersion, convert, set_akida_version
    from quantizeml.models import QuantizationParams, quantize

    qparams = QuantizationParams(input_weight_bits=8, weight_bits=weight_bits,
                                 activation_bits=activation_bits, per_tensor_activations=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized = quantize(model, qparams=qparams, samples=samples.astype("float32"),
                             num_samples=len(samples), batch_size=64, epochs=1)
        with set_akida_version(AkidaVersion.v1):
            converted = convert(quantized)
    messages = [str(w.message) for w in caught]
    return Conversion(quantized, converted, messages, find_cut(converted, messages))


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


def map_on_virtual_akd1000(converted: Any, layers: list[dict[str, Any]]) -> MappingFigures:
    """Map onto a virtual AKD1000 in one hardware sequence: the hardware-fit truth."""
    import akida

    try:
        converted.map(akida.AKD1000(), hw_only=True)
    except Exception as error:  # the mapper's RuntimeError/ValueError is the verdict
        return MappingFigures(error=mapper.explain_mapping_error(str(error).strip(), layers))
    try:
        return _mapping_figures(converted)
    finally:
        converted.map(None)  # back to the software engine for inference


def _mapping_figures(converted: Any) -> MappingFigures:
    import akida

    nps = hardware = software = memory = 0
    for sequence in converted.sequences:
        if sequence.backend != akida.BackendType.Hardware:
            software += 1
            continue
        hardware += 1
        info = akida.get_program_memory_infos(sequence.program)
        memory += sum(getattr(info, name) for name in (
            "input_memory", "input_descriptor_memory", "output_memory", "program_memory",
            "extra_program_memory", "program_descriptors_memory"))
        nps += sum(len(layer.mapping.nps) for part in sequence.passes for layer in part.layers
                   if layer.mapping is not None)
    return MappingFigures(None, nps, hardware, software, memory)


# ---------------------------------------------------------------------------- train


def train(architecture: Path, weights: Path, data: Split, out: Path, *, epochs: int,
          batch_size: int, seed: int, progress: OnProgress) -> None:
    """The default recipe: seeded Adam on sparse cross-entropy from logits; weights to `out`."""
    import tf_keras as keras

    model, _ = rebuild(architecture, weights)
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(_images(data.x_fit), data.y_fit, epochs=epochs, batch_size=batch_size,
              validation_data=(_images(data.x_val), data.y_val), verbose=0,
              callbacks=[_epoch_progress(progress, epochs)])
    save_weights(model, out)


def save_weights(model: Any, out: Path) -> None:
    with out.open("wb") as handle:
        np.savez(handle, *[np.asarray(w) for w in model.get_weights()])


def _epoch_progress(progress: OnProgress, epochs: int) -> Any:
    import tf_keras as keras

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            progress(f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, "
                     f"accuracy {logs.get('accuracy', float('nan')):.4f}, "
                     f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f}")

    return EpochProgress()


# ---------------------------------------------------------------------------- grade


def grade(job: jobs.Grade, data: Split, progress: OnProgress) -> Graded:
    """Evaluate the trained model: float, quantized, Akida accuracy; the .fbz to `job.out`."""
    model, layers = rebuild(Path(job.architecture), Path(job.weights))
    return _grade(model, layers, data, job, progress, first=None)


def _grade(model: Any, layers: Specs, data: Split, job: jobs.Grade, progress: OnProgress,
           first: Conversion | None) -> Graded:
    float_accuracy = argmax_accuracy(_float_outputs(model, layers, data.x_test), data.y_test)
    progress(f"float accuracy {float_accuracy:.4f}")
    conversion, attempt, scores = _best_conversion(model, layers, job, data, progress, first)
    quantized = keras_accuracy(conversion.quantized, data.x_test, data.y_test)
    akida = None if conversion.cut_at else akida_accuracy(conversion.akida, data.x_test,
                                                          data.y_test)
    mapping = map_on_virtual_akd1000(conversion.akida, layers)
    conversion.akida.save(job.out)
    return Graded(n_train=len(data.y_fit), n_test=len(data.y_test), route=job.route,
                  cached=job.cached, float_accuracy=float_accuracy,
                  quantized_accuracy=quantized, akida_accuracy=akida, quantize_attempt=attempt,
                  attempt_val_accuracies=tuple(scores), cut_at=conversion.cut_at,
                  mapping=mapping, peak_rss_mb=peak_rss_mb())


def _float_outputs(model: Any, layers: Specs, x: Array) -> Array:
    """The float model's outputs; SubmissionError when they cannot classify anything."""
    outputs: Array = model.predict(_images(x).astype("float32"), batch_size=100, verbose=0)
    if not np.isfinite(outputs).all():
        raise SubmissionError(numbers_problem(model, layers, x) or (
            "the model's outputs are not finite numbers (they overflow): its weights are far too "
            "large; training diverged (try a lower learning rate)"))
    if len(outputs) > 1 and float(np.ptp(outputs, axis=0).max()) == 0.0:
        raise SubmissionError(_constant_message(model, layers, x))
    return outputs


def _constant_message(model: Any, layers: Specs, x: Array) -> str:
    """Name the first layer whose output is the same for every image."""
    import tf_keras as keras

    probe = keras.Model(model.inputs, [layer.output for layer in model.layers])
    outputs = probe.predict(_images(x[:64]).astype("float32"), verbose=0)
    for spec, output in zip(layers, outputs if isinstance(outputs, list) else [outputs],
                            strict=False):
        if float(np.ptp(output, axis=0).max()) == 0.0:
            return (f"the model outputs the same values for every image, so it cannot classify: "
                    f"{describe(spec)} already outputs the same values for every image (dead "
                    "ReLUs, weights that are all zero, or a max_value or threshold that clips "
                    "everything). Retrain it, or check that layer's weights")
    return "the model outputs the same values for every image, so it cannot classify"


def _best_conversion(model: Any, layers: Specs, job: jobs.Grade, data: Split,
                     progress: OnProgress,
                     first: Conversion | None) -> tuple[Conversion, int, list[float]]:
    """Seeded attempts, each calibrated on its own sample of training images; best on
    validation. `first`: attempt 0's conversion, already made (inspect_and_grade)."""
    best: Conversion | None = None
    best_index, scores = 0, list[float]()
    attempts = job.attempts
    for attempt in range(attempts):
        samples = first_calibration(data, job.calibration_samples, job.seed + attempt)
        try:
            conversion = first if attempt == 0 and first is not None else \
                quantize_and_convert(model, job.weight_bits, job.activation_bits,  # type: ignore[arg-type]
                                     samples)
        except Exception as error:  # quantizeml/cnn2snn refusing the model is the model's fault
            raise SubmissionError(numbers_problem(model, layers, samples)
                                  or quantization_failure(error, layers)) from None
        if attempts == 1:  # nothing to choose: spare the validation pass
            progress("quantized and converted (one attempt)")
            return conversion, 0, scores
        score = (akida_accuracy(conversion.akida, data.x_val, data.y_val) if not conversion.cut_at
                 else keras_accuracy(conversion.quantized, data.x_val, data.y_val))
        scores.append(score)
        progress(f"quantization attempt {attempt + 1}: validation accuracy {score:.4f}")
        if best is None or score > scores[best_index]:
            best, best_index = conversion, attempt
    assert best is not None
    return best, best_index, scores


def quantization_failure(error: Exception, layers: Specs) -> str:
    """A quantize/convert failure of a trained model, in our words first."""
    text = str(error)
    named = next((layer for layer in layers if f"/{layer['name']}/" in text
                  or f"'{layer['name']}'" in text), None)
    where = f" at {describe(named)}" if named else ""
    if "assert" in text.lower() or type(error).__name__ == "InvalidArgumentError":
        return (f"quantizing the trained model for Akida 1.0 failed{where}: its values do not "
                "fit the quantized ranges (weights or biases far larger than its inputs' scale). "
                "Training probably diverged: retrain with a lower learning rate")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return (f"quantization or conversion for Akida 1.0 failed{where} (see v1_constraints); "
            f"the Akida tools said: {first}")


def _images(x: Array) -> Array:
    return x[..., np.newaxis] if x.ndim == 3 else x


def keras_accuracy(model: Any, x: Array, y: Array, batch_size: int = 100) -> float:
    return argmax_accuracy(model.predict(_images(x).astype("float32"), batch_size=batch_size,
                                  verbose=0), y)


def akida_accuracy(converted: Any, x: Array, y: Array) -> float:
    """The akida software engine: the accuracy the chip computes, on the CPU."""
    return argmax_accuracy(converted.predict(_images(x).astype("uint8")), y)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
