"""Typed stage results -> a check's `Verdict`: its outcome and the message the student reads.

Pure: no pytest, no TensorFlow, no files. Each check of the catalog (catalog.CHECKS) names one
of the verdicts below; the grader hands it the `Evidence` its stage made. The messages name the
layer, the rule and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pytest_akida_grade.assignment import MIN_ACCURACY, QUALITY_MAX
from pytest_akida_grade.quality import Measurement, Run, energy_budget_mj, format_measurement
from pytest_akida_grade.results import (
    FAILED,
    PASSED,
    SKIPPED,
    Built,
    Graded,
    MappingFigures,
    Stage,
    V1Truth,
    Verdict,
    Violation,
)

NOT_LOADED = Verdict(SKIPPED, "not checked: the submission did not load (see its loads check)")
MAPPED_ON = "static: mapped on a virtual AKD1000 (akida.get_program_memory_infos), not measured " \
            "on a board"


@dataclass(frozen=True)
class Evidence:
    """What a check's verdict reads: the stages its catalog entry needs, and the bars."""

    check: str  # the check judged (its violations in `built`)
    built: Stage[Built]
    graded: Stage[Graded] | None = None  # grade checks: the grade; hardware: the grade if it ran
    run: Stage[Run] | None = None  # hardware: the board's, a recording's, or none
    student: str = ""
    min_accuracy: float = MIN_ACCURACY
    quality_max: float = QUALITY_MAX


Judge = Callable[[Evidence], Verdict]


def _bullets(violations: tuple[Violation, ...] | list[Violation]) -> list[str]:
    return [f"- {v.message}" for v in violations]


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


# ---------------------------------------------------------------------------- fast checks


def loads(evidence: Evidence) -> Verdict:
    built = evidence.built
    if not built.ok or built.result is None:
        return Verdict(FAILED, f"the submission does not load: {built.failure}")
    result = built.result
    later = "" if result.not_rebuilt is None else (
        f"; its accuracy will not be graded: the grader does not rebuild it ({result.not_rebuilt})")
    return Verdict(PASSED, "build_model() returned a tf_keras model with "
                           f"{len(result.layers)} layers, {result.params} parameters{later}",
                   {"weight_bits": result.weight_bits, "activation_bits": result.activation_bits,
                    "params": result.params})


def _loaded(check: Callable[[Built, str], Verdict]) -> Judge:
    """A verdict on a loaded model (the broken rules of `check` in it); skipped otherwise."""
    def verdict(evidence: Evidence) -> Verdict:
        built = evidence.built
        return check(built.result, evidence.check) if built.ok and built.result is not None \
            else NOT_LOADED

    verdict.__name__ = check.__name__
    return verdict


def rules_kept(passed: str) -> Judge:
    """Failed with the broken rules, each a bullet; else `passed`."""
    def verdict(built: Built, check: str) -> Verdict:
        found = built.violations.get(check, ())
        return Verdict(FAILED, "\n".join(_bullets(found))) if found else Verdict(PASSED, passed)

    return _loaded(verdict)


@_loaded
def quantization_scheme(built: Built, check: str) -> Verdict:
    found = built.violations.get(check, ())
    if found:
        return Verdict(FAILED, "\n".join(_bullets(found)))
    return Verdict(PASSED, f"W{built.weight_bits}A{built.activation_bits} is supported by "
                           "Akida 1.0")


@_loaded
def v1_constraints(built: Built, check: str) -> Verdict:
    """Both kinds of evidence: the rules, and the toolchain on a virtual AKD1000."""
    found = built.violations.get(check, ())
    if built.not_rebuilt is not None:
        return Verdict(FAILED, "\n".join([
            f"not checked on the Akida tools: the grader does not rebuild this model "
            f"({built.not_rebuilt})", *_bullets(found)]))
    problem = toolchain_problem(built.v1)
    mapping = built.v1.mapping
    metrics = static_mapping_metrics(mapping) if problem is None and mapping else {}
    bits = "" if built.v1.declared_bits_used else (
        " (checked at W4A4: the declared precision is not supported, see quantization_scheme)")
    if not found and problem is None:
        nps = mapping.nps if mapping else None
        return Verdict(PASSED, "documented Akida 1.0 rules: all satisfied; virtual AKD1000: "
                               f"mapped in one hardware sequence on {nps} NPs{bits}", metrics)
    return Verdict(FAILED, "\n".join(_v1_lines(found, problem, bits)), metrics)


def _v1_lines(found: tuple[Violation, ...], problem: str | None, bits: str) -> list[str]:
    documented = [v for v in found if v.documented]
    measured = [v for v in found if not v.documented]
    if documented:
        lines = ["Akida 1.0 hardware constraints (BrainChip's documented rules):",
                 *_bullets(documented)]
    else:
        lines = ["Akida 1.0 hardware constraints (documented rules): all satisfied, but"]
    if measured:
        lines += ["limits of the AKD1000 found by mapping (not in BrainChip's constraints page):",
                  *_bullets(measured)]
    if problem is not None:
        lines.append(f"virtual AKD1000 (quantize, convert, map){bits}: {problem}")
    else:
        lines.append("virtual AKD1000: the mapper accepted the model anyway; the rules above "
                     "still apply to the real chip")
    return lines


def toolchain_problem(truth: V1Truth) -> str | None:
    if truth.conversion_error:
        return f"the Akida tools refused the model: {truth.conversion_error}"
    if truth.cut_at:
        return (f"{truth.cut_at}. The converted model does not end with the 10 classes; "
                "move or remove that layer")
    mapping = truth.mapping
    if mapping is not None and mapping.error:
        return f"the mapper refused the model: {mapping.error}"
    if mapping is not None and mapping.software_sequences:
        return "part of the model cannot run on the chip (it was mapped to software)"
    return None


def static_mapping_metrics(mapping: MappingFigures) -> dict[str, Any]:
    """NPs and program memory of the mapping on a virtual AKD1000: static, not measured."""
    return {"nps": mapping.nps, "program_memory_bytes": mapping.program_memory_bytes,
            "mapping_figures": MAPPED_ON}


def not_rebuilt(why: str) -> Verdict:
    """An accuracy or hardware check of a model the grader does not rebuild."""
    return Verdict(SKIPPED, f"not graded: the grader does not rebuild this model ({why}); "
                            "see layer_whitelist and v1_constraints")


# ---------------------------------------------------------------------------- accuracy


def accuracy_metrics(graded: Graded) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "float_accuracy": graded.float_accuracy, "quantized_accuracy": graded.quantized_accuracy,
        "akida_accuracy": graded.akida_accuracy, "quantize_attempt": graded.quantize_attempt,
        "n_test": graded.n_test, "training": graded.training}
    metrics = {name: value for name, value in metrics.items() if value is not None}
    if not graded.mapping.error:
        metrics.update(static_mapping_metrics(graded.mapping))
    return metrics


def _graded(evidence: Evidence) -> Graded | Verdict:
    """The grade, or the failed verdict saying why there is none."""
    stage = evidence.graded
    if stage is None or not stage.ok or stage.result is None:
        return Verdict(FAILED, f"not graded: {stage.failure if stage else 'no grade'}")
    return stage.result


def quantized_accuracy(evidence: Evidence) -> Verdict:
    graded = _graded(evidence)
    if isinstance(graded, Verdict):
        return graded
    min_accuracy = evidence.min_accuracy
    text = (f"quantized Keras model: {_percent(graded.quantized_accuracy)} on {graded.n_test} "
            f"test images (float {_percent(graded.float_accuracy)}, training: "
            f"{graded.training}, quantization attempt {graded.quantize_attempt + 1})")
    passed = graded.quantized_accuracy >= min_accuracy
    if not passed:
        text += f"; needs at least {_percent(min_accuracy)}"
    if graded.cut_at:  # the layers after the cut ran in float: not the quantized model
        passed = False
        text += (f"; but this is not a fully quantized model: {graded.cut_at} "
                 "(see v1_constraints)")
    return Verdict(PASSED if passed else FAILED, text, accuracy_metrics(graded))


def akida_accuracy(evidence: Evidence) -> Verdict:
    graded = _graded(evidence)
    if isinstance(graded, Verdict):
        return graded
    min_accuracy = evidence.min_accuracy
    if graded.akida_accuracy is None:
        return Verdict(FAILED, f"the converted model cannot classify: {graded.cut_at}",
                       accuracy_metrics(graded))
    accuracy, quantized = graded.akida_accuracy, graded.quantized_accuracy
    text = f"Akida model (software engine): {_percent(accuracy)} on {graded.n_test} test images"
    gap = 100 * (quantized - accuracy)
    if abs(gap) > 1.0:
        text += (f"; {abs(gap):.2f} points {'below' if gap > 0 else 'above'} the quantized "
                 f"Keras model ({_percent(quantized)}): the conversion changes what the "
                 "model computes")
    passed = accuracy >= min_accuracy
    if not passed:
        text += f"; needs at least {_percent(min_accuracy)}"
    return Verdict(PASSED if passed else FAILED, text, accuracy_metrics(graded))


# ---------------------------------------------------------------------------- hardware


def hardware(evidence: Evidence) -> Verdict:
    """The verdict, with the assignment's printout of the run for the terminal."""
    run, quality_max = evidence.run, evidence.quality_max
    graded = evidence.graded.result if evidence.graded and evidence.graded.ok else None
    if run is None or not run.ok or run.result is None:
        return Verdict(FAILED, (run.failure if run else None) or "not measured")
    result = run.result
    if result.measurement is None:
        accuracy = graded.akida_accuracy if graded else None
        memory = graded.mapping.program_memory_bytes if graded else None
        budget = (energy_budget_mj(accuracy, memory, quality_max)
                  if accuracy is not None and memory else None)
        verdict = no_hardware(accuracy, memory, budget, quality_max)
        kept = {"model_sha256": result.kept} if result.kept else {}
        if result.why:
            verdict = replace(verdict, message=f"{result.why}. {verdict.message}",
                              metrics={**verdict.metrics, **kept})
        return verdict
    return measured(result.measurement, result.source, evidence.student,
                    graded.quantized_accuracy if graded else None, quality_max)


def measured(measurement: Measurement, source: str, student: str,
             quantized_accuracy: float | None, quality_max: float) -> Verdict:
    """A run's figures (the board's, a recording's) against the bar, with the printout."""
    text = format_measurement(student, measurement, quantized_accuracy=quantized_accuracy,
                              quality_max=quality_max)
    verdict = hardware_quality(measurement, source, quality_max=quality_max, report=text)
    return replace(verdict, printout=tuple(text.splitlines()))


def hardware_quality(measurement: Measurement, source: str, *, quality_max: float,
                     report: str) -> Verdict:
    """A measured or replayed run against the quality bar."""
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
