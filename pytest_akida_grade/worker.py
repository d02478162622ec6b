"""The child process that runs student code: `python -m pytest_akida_grade.worker REQUEST.json`.

It talks to the parent (isolation.py) in JSON lines on its original stdout; everything else
written to stdout (the student's prints, Keras' progress bars) is sent to stderr instead, so a
submission cannot corrupt the protocol. The last line is {"event": "result", "result": {...}}.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from pytest_akida_grade.catalog import SUPPORTED_SCHEMES


class Channel:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def send(self, event: str, **payload: Any) -> None:
        self.stream.write(json.dumps({"event": event, **payload}) + "\n")
        self.stream.flush()

    def progress(self, message: str) -> None:
        self.send("progress", message=message)


def _take_stdout() -> Channel:
    """Keep the real stdout for the protocol; point fd 1 (and sys.stdout) at stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return Channel(protocol)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------- inspect


def inspect(request: dict[str, Any], channel: Channel) -> dict[str, Any]:
    """Build the model and check its fit on Akida 1.0 without training (the fast checks)."""
    from pytest_akida_grade import pipeline

    path = Path(request["path"])
    module = pipeline.import_submission(path)
    weight_bits, activation_bits = pipeline.declared_bits(module)
    result: dict[str, Any] = {
        "weight_bits": _plain(weight_bits), "activation_bits": _plain(activation_bits),
    }
    model = pipeline.build_model(module, path)
    if request.get("weights_file"):  # part of the contract: it must fit the built model
        pipeline.load_weights(model, Path(request["weights_file"]))
    if "train" in vars(module) and not callable(module.train):
        raise pipeline.SubmissionError("train is defined but is not a function: define "
                                       "train(model, x_train, y_train) or remove it")
    result["layers"] = pipeline.layer_specs(model)
    result["params"] = int(model.count_params())
    result["v1"] = _v1_truth(model, weight_bits, activation_bits, request["seed"])
    return result


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else repr(value)


def _v1_truth(model: Any, weight_bits: Any, activation_bits: Any, seed: int) -> dict[str, Any]:
    """Quantize the untrained model, convert for Akida 1.0 and map it on a virtual AKD1000."""
    from pytest_akida_grade import pipeline

    scheme = (weight_bits, activation_bits)
    declared = scheme in SUPPORTED_SCHEMES and all(type(b) is int for b in scheme)
    bits = scheme if declared else (4, 4)
    # Hardware fit does not depend on trained weights: a fixed seeded sample calibrates.
    samples = np.random.default_rng(seed).integers(0, 256, (64, 28, 28, 1)).astype("uint8")
    truth: dict[str, Any] = {"bits": list(bits), "declared_bits_used": declared}
    try:
        conversion = pipeline.quantize_and_convert(model, bits[0], bits[1], samples)
    except Exception as error:
        truth["conversion_error"] = f"{type(error).__name__}: {error}"
        return truth
    truth["cut_at"] = conversion.cut_at
    truth["warnings"] = conversion.warnings[:20]
    truth["mapping"] = vars(pipeline.map_on_virtual_akd1000(conversion.akida))
    return truth


# ---------------------------------------------------------------------------- grade


def grade(request: dict[str, Any], channel: Channel) -> dict[str, Any]:
    """Train (or load), quantize, convert and evaluate on the test set (the accuracy checks)."""
    from pytest_akida_grade import pipeline

    path = Path(request["path"])
    module = pipeline.import_submission(path)
    weight_bits, activation_bits = pipeline.declared_bits(module)
    _seed(request["seed"])  # build_model() draws the initial weights: same seed, same grade
    model = pipeline.build_model(module, path)
    data = _load_data(request)
    result: dict[str, Any] = {"n_test": len(data["y_test"]), "n_train": len(data["y_fit"])}
    result["training"] = _train(request, module, path, model, data, channel)
    model.save_weights(request["artifacts"]["weights"])
    result["float_accuracy"] = pipeline.keras_accuracy(model, data["x_test"], data["y_test"])
    channel.progress(f"float accuracy {result['float_accuracy']:.4f}")
    conversion, attempt, scores = _best_conversion(request, model, weight_bits, activation_bits,
                                                   data, channel)
    result.update(quantize_attempt=attempt, attempt_val_accuracies=scores,
                  cut_at=conversion.cut_at)
    result["quantized_accuracy"] = pipeline.keras_accuracy(
        conversion.quantized, data["x_test"], data["y_test"])
    if conversion.cut_at is None:
        result["akida_accuracy"] = pipeline.akida_accuracy(
            conversion.akida, data["x_test"], data["y_test"])
    result["mapping"] = vars(pipeline.map_on_virtual_akd1000(conversion.akida))
    conversion.akida.save(request["artifacts"]["model"])
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _seed(seed: int) -> None:
    import tf_keras as keras

    keras.utils.set_random_seed(seed)


def _load_data(request: dict[str, Any]) -> dict[str, np.ndarray]:
    """The keras-layout npz the parent validated; a seeded split holds validation images out."""
    with np.load(request["mnist"]) as archive:
        x_train, y_train = archive["x_train"], archive["y_train"]
        x_test, y_test = archive["x_test"], archive["y_test"]
    if request["train_limit"]:
        x_train, y_train = x_train[: request["train_limit"]], y_train[: request["train_limit"]]
    if request["test_limit"]:
        x_test, y_test = x_test[: request["test_limit"]], y_test[: request["test_limit"]]
    order = np.random.default_rng(request["seed"]).permutation(len(x_train))
    n_val = max(1, round(len(x_train) * request["validation_split"]))
    fit, val = order[:-n_val], order[-n_val:]
    return {"x_fit": x_train[fit], "y_fit": y_train[fit], "x_val": x_train[val],
            "y_val": y_train[val], "x_test": x_test, "y_test": y_test}


def _train(request: dict[str, Any], module: Any, path: Path, model: Any,
           data: dict[str, np.ndarray], channel: Channel) -> str:
    from pytest_akida_grade import pipeline

    route = _training_route(request, module)
    cached = request.get("trained_weights")
    if cached:
        pipeline.load_weights(model, Path(cached))
        return route + " (cached)"
    if route == "weights file":
        pipeline.load_weights(model, Path(request["weights_file"]))
    elif route == "train()":
        channel.progress("calling the submission's train()")
        trained = pipeline.train_with_student_function(module, path, model, data["x_fit"],
                                                       data["y_fit"])
        if trained is not model:
            model.set_weights(trained.get_weights())
    else:
        pipeline.train_default(model, data["x_fit"], data["y_fit"],
                               (data["x_val"], data["y_val"]), epochs=request["epochs"],
                               batch_size=request["batch_size"], seed=request["seed"],
                               progress=channel.progress)
    return route


def _training_route(request: dict[str, Any], module: Any) -> str:
    """The contract's order: a weights file beside the module, its train(), the default."""
    if Path(request["weights_file"]).is_file():
        return "weights file"
    if callable(getattr(module, "train", None)):
        return "train()"
    return "default recipe"


def _best_conversion(request: dict[str, Any], model: Any, weight_bits: int,
                     activation_bits: int, data: dict[str, np.ndarray],
                     channel: Channel) -> tuple[Any, int, list[float]]:
    """Seeded attempts, each calibrated on its own sample of training images; best on validation."""
    from pytest_akida_grade import pipeline

    best, best_index, scores = None, 0, []
    for attempt in range(request["quantize_attempts"]):
        rng = np.random.default_rng(request["seed"] + attempt)
        count = min(request["calibration_samples"], len(data["x_fit"]))
        samples = pipeline.with_channel(data["x_fit"][rng.choice(len(data["x_fit"]), count,
                                                                 replace=False)])
        try:
            conversion = pipeline.quantize_and_convert(model, weight_bits, activation_bits,
                                                       samples)
        except Exception as error:  # quantizeml/cnn2snn refusing the model is the model's fault
            raise pipeline.SubmissionError(
                f"quantization or conversion for Akida 1.0 failed (see v1_constraints): "
                f"{type(error).__name__}: {error}") from None
        if request["quantize_attempts"] == 1:  # nothing to choose: spare the validation pass
            channel.progress("quantized and converted (one attempt)")
            return conversion, 0, scores
        if conversion.cut_at is None:
            score = pipeline.akida_accuracy(conversion.akida, data["x_val"], data["y_val"])
        else:
            score = pipeline.keras_accuracy(conversion.quantized, data["x_val"], data["y_val"])
        scores.append(score)
        channel.progress(f"quantization attempt {attempt + 1}: validation accuracy {score:.4f}")
        if best is None or score > scores[best_index]:
            best, best_index = conversion, attempt
    return best, best_index, scores


# ---------------------------------------------------------------------------- main

STAGES = {"inspect": inspect, "grade": grade}


def main(argv: list[str]) -> int:
    channel = _take_stdout()
    request = json.loads(Path(argv[0]).read_text())
    from pytest_akida_grade.pipeline import SubmissionError

    try:
        result = STAGES[request["stage"]](request, channel)
    except SubmissionError as error:
        channel.send("result", result={"error": str(error), "student_fault": True})
        return 0
    except Exception as error:  # the harness's own failure: say so, with the traceback
        import traceback

        channel.send("result", result={"error": f"{type(error).__name__}: {error}",
                                       "student_fault": False,
                                       "traceback": traceback.format_exc()[-4000:]})
        return 0
    channel.send("result", result=result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))
