"""The eight checks: each turns stage results into a verdict with a message for the student.

Check names are public (test ids, JSON, gradebook): see CHECKS. No pytest and no TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_akida_grade.grading import Stage
from pytest_akida_grade.rules import akida_v1, design_space
from pytest_akida_grade.rules.specs import Violation

CHECKS = ("loads", "layer_whitelist", "relu_bounded", "quantization_scheme", "v1_constraints",
          "quantized_accuracy", "akida_accuracy", "hardware_quality")
FAST_CHECKS = CHECKS[:5]  # need no training: the inspect stage only
ACCURACY_CHECKS = ("quantized_accuracy", "akida_accuracy")

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class Verdict:
    outcome: str
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)


NOT_LOADED = Verdict(SKIPPED, "not checked: the submission did not load (see its loads check)")


def _from_violations(violations: list[Violation], ok: str) -> Verdict:
    if not violations:
        return Verdict(PASSED, ok)
    return Verdict(FAILED, "\n".join(f"- {v.message}" for v in violations))


# ---------------------------------------------------------------------------- fast checks


def loads(inspected: Stage) -> Verdict:
    if not inspected.ok:
        return Verdict(FAILED, f"the submission does not load: {inspected.failure}")
    result = inspected.result or {}
    return Verdict(PASSED, "build_model() returned a tf_keras model with "
                           f"{len(result['layers'])} layers, {result.get('params')} parameters",
                   {"weight_bits": result["weight_bits"],
                    "activation_bits": result["activation_bits"],
                    "params": result.get("params")})


def _loaded(check: Callable[[dict[str, Any]], Verdict]) -> Callable[[Stage], Verdict]:
    def verdict(inspected: Stage) -> Verdict:
        return check(inspected.result or {}) if inspected.ok else NOT_LOADED

    verdict.__name__ = check.__name__
    return verdict


@_loaded
def layer_whitelist(result: dict[str, Any]) -> Verdict:
    return _from_violations(design_space.layer_whitelist(result["layers"]),
                            "every layer is in the assignment's design space")


@_loaded
def relu_bounded(result: dict[str, Any]) -> Verdict:
    return _from_violations(design_space.relu_bounded(result["layers"]),
                            "every ReLU has an upper bound and no layer hides an activation")


@_loaded
def quantization_scheme(result: dict[str, Any]) -> Verdict:
    weight_bits, activation_bits = result["weight_bits"], result["activation_bits"]
    return _from_violations(design_space.quantization_scheme(weight_bits, activation_bits),
                            f"W{weight_bits}A{activation_bits} is supported by Akida 1.0")


@_loaded
def v1_constraints(result: dict[str, Any]) -> Verdict:
    """Both kinds of evidence: the documented rules, and the toolchain on a virtual AKD1000."""
    static = akida_v1.v1_static(result["layers"])
    truth = result.get("v1", {})
    problem = _toolchain_problem(truth)
    mapping = truth.get("mapping") or {}
    metrics = _static_mapping_metrics(mapping) if problem is None else {}
    bits = "" if truth.get("declared_bits_used", True) else (
        " (checked at W4A4: the declared precision is not supported, see quantization_scheme)")
    if not static and problem is None:
        return Verdict(PASSED, "documented Akida 1.0 rules: all satisfied; virtual AKD1000: "
                               f"mapped in one hardware sequence on {mapping.get('nps')} NPs"
                               + bits, metrics)
    lines = []
    if static:
        lines.append("Akida 1.0 hardware constraints (BrainChip's documented rules):")
        lines += [f"- {v.message}" for v in static]
    else:
        lines.append("Akida 1.0 hardware constraints (documented rules): all satisfied, but")
    if problem is not None:
        lines.append(f"virtual AKD1000 (quantize, convert, map){bits}: {problem}")
    else:
        lines.append("virtual AKD1000: the mapper accepted the model anyway; the documented "
                     "rules above still apply to the real chip")
    return Verdict(FAILED, "\n".join(lines), metrics)


def _toolchain_problem(truth: dict[str, Any]) -> str | None:
    if not truth:
        return None
    if truth.get("conversion_error"):
        return f"the Akida tools refused the model: {truth['conversion_error']}"
    if truth.get("cut_at"):
        return (f"{truth['cut_at']}. The converted model does not end with the 10 classes; "
                "move or remove that layer")
    mapping = truth.get("mapping") or {}
    if mapping.get("error"):
        return f"the mapper refused the model: {mapping['error']}"
    if mapping.get("software_sequences"):
        return "part of the model cannot run on the chip (it was mapped to software)"
    return None


FAST = {"loads": loads, "layer_whitelist": layer_whitelist, "relu_bounded": relu_bounded,
        "quantization_scheme": quantization_scheme, "v1_constraints": v1_constraints}


# ---------------------------------------------------------------------------- accuracy


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def accuracy_metrics(result: dict[str, Any]) -> dict[str, Any]:
    names = ("float_accuracy", "quantized_accuracy", "akida_accuracy", "quantize_attempt",
             "n_test", "training")
    metrics = {name: result.get(name) for name in names if result.get(name) is not None}
    mapping = result.get("mapping") or {}
    if not mapping.get("error"):
        metrics.update(_static_mapping_metrics(mapping))
    return metrics


def _static_mapping_metrics(mapping: dict[str, Any]) -> dict[str, Any]:
    """NPs and program memory of the mapping on a virtual AKD1000: static, not measured."""
    return {"nps": mapping.get("nps"), "program_memory_bytes": mapping.get("program_memory_bytes"),
            "mapping_figures": "static: mapped on a virtual AKD1000 "
                               "(akida.get_program_memory_infos), not measured on a board"}


def quantized_accuracy(graded: Stage, min_accuracy: float) -> Verdict:
    if not graded.ok:
        return Verdict(FAILED, f"not graded: {graded.failure}")
    result = graded.result or {}
    accuracy = result["quantized_accuracy"]
    text = (f"quantized Keras model: {_percent(accuracy)} on {result['n_test']} test images "
            f"(float {_percent(result['float_accuracy'])}, training: {result['training']}, "
            f"quantization attempt {result['quantize_attempt'] + 1})")
    outcome = PASSED if accuracy >= min_accuracy else FAILED
    if outcome == FAILED:
        text += f"; needs at least {_percent(min_accuracy)}"
    if result.get("cut_at"):  # the layers after the cut ran in float: not the quantized model
        outcome = FAILED
        text += (f"; but this is not a fully quantized model: {result['cut_at']} "
                 "(see v1_constraints)")
    return Verdict(outcome, text, accuracy_metrics(result))


def akida_accuracy(graded: Stage, min_accuracy: float) -> Verdict:
    if not graded.ok:
        return Verdict(FAILED, f"not graded: {graded.failure}")
    result = graded.result or {}
    if result.get("akida_accuracy") is None:
        return Verdict(FAILED, f"the converted model cannot classify: {result.get('cut_at')}",
                       accuracy_metrics(result))
    accuracy, quantized = result["akida_accuracy"], result["quantized_accuracy"]
    text = f"Akida model (software engine): {_percent(accuracy)} on {result['n_test']} test images"
    gap = 100 * (quantized - accuracy)
    if abs(gap) > 1.0:
        text += (f"; {abs(gap):.2f} points {'below' if gap > 0 else 'above'} the quantized "
                 f"Keras model ({_percent(quantized)}): the conversion changes what the "
                 "model computes")
    outcome = PASSED if accuracy >= min_accuracy else FAILED
    if outcome == FAILED:
        text += f"; needs at least {_percent(min_accuracy)}"
    return Verdict(outcome, text, accuracy_metrics(result))


# ---------------------------------------------------------------------------- hardware


def hardware_quality(measurement: Any, source: str, *, quality_max: float,
                     report: str) -> Verdict:
    """A measured or replayed run (hardware.Measurement) against the quality bar."""
    quality = measurement.quality()
    metrics = {**measurement.to_json(), "hardware_accuracy": measurement.accuracy,
               "quality": quality, "source": source}
    metrics.pop("accuracy", None)
    passed = quality < quality_max
    verdict = (f"Quality {quality:.1f} {'<' if passed else '>='} {quality_max:g} "
               f"({'full credit' if passed else 'no full credit'}; {source} figures)")
    return Verdict(PASSED if passed else FAILED, f"{verdict}\n{report}", metrics)


def no_hardware(accuracy: float | None, memory_estimate: int | None, budget_mj: float | None,
                quality_max: float) -> Verdict:
    """Skip, and still tell the student the energy budget their figures leave."""
    text = ("not measured: no board and no recording. Run with --akida-device on the lab board, "
            "or --akida-replay FILE with recorded figures.")
    if budget_mj is not None and accuracy is not None and memory_estimate:
        text += (f" Estimate: with your software accuracy {_percent(accuracy)} and a static "
                 f"memory estimate of {memory_estimate} bytes, Quality < {quality_max:g} needs "
                 f"latency x power <= {budget_mj:.3f} mJ/frame (an estimate: the board's "
                 "memory figure and accuracy decide)")
    return Verdict(SKIPPED, text, {"source": "none", "energy_budget_mj": budget_mj})
