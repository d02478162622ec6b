"""verdicts.py over typed stage results: pure, no TensorFlow, no child process."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from board_double import PUBLISHED_FAIL, PUBLISHED_PASS

from pytest_akida_grade import catalog, quality
from pytest_akida_grade import verdicts as checks
from pytest_akida_grade.results import (
    Built,
    Graded,
    MappingFigures,
    Route,
    Stage,
    V1Truth,
    Verdict,
    Violation,
)

LAYERS = [
    {"index": 0, "name": "rescaling", "class_name": "Rescaling",
     "config": {"scale": 1 / 255, "offset": 0.0}, "input_shape": [28, 28, 1],
     "output_shape": [28, 28, 1]},
    {"index": 1, "name": "conv2d", "class_name": "Conv2D",
     "config": {"filters": 16, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                "activation": "linear", "dilation_rate": [1, 1], "groups": 1},
     "input_shape": [28, 28, 1], "output_shape": [14, 14, 16]},
    {"index": 2, "name": "re_lu", "class_name": "ReLU",
     "config": {"max_value": 3.0, "negative_slope": 0.0, "threshold": 0.0},
     "input_shape": [14, 14, 16], "output_shape": [14, 14, 16]},
    {"index": 3, "name": "flatten", "class_name": "Flatten", "config": {},
     "input_shape": [14, 14, 16], "output_shape": [3136]},
    {"index": 4, "name": "dense", "class_name": "Dense",
     "config": {"units": 10, "activation": "linear"}, "input_shape": [3136],
     "output_shape": [10]},
]
MAPPED = {"error": None, "nps": 3, "hardware_sequences": 1, "software_sequences": 0,
          "program_memory_bytes": 40000}


def inspected(**v1: Any) -> Stage[Built]:
    if isinstance(v1.get("mapping"), dict):
        v1["mapping"] = MappingFigures.from_json({**MAPPED, **v1["mapping"]})
    truth = V1Truth(**{"bits": (4, 4), "declared_bits_used": True, "cut_at": None,
                       "mapping": MappingFigures.from_json(MAPPED), **v1})
    return Stage(result=Built(layers=tuple(LAYERS), params=1000, weight_bits=4,
                              activation_bits=4, violations={}, v1=truth,
                              route=Route.DEFAULT_RECIPE))


def graded(quantized: float = 0.97, akida: float | None = 0.968) -> Stage[Graded]:
    return Stage(result=Graded(n_train=54000, n_test=10000, route=Route.DEFAULT_RECIPE,
                               float_accuracy=0.98, quantized_accuracy=quantized,
                               akida_accuracy=akida, quantize_attempt=0,
                               attempt_val_accuracies=(), cut_at=None,
                               mapping=MappingFigures.from_json(MAPPED), peak_rss_mb=1000.0))


def judge(check: str, built: Stage[Built] | None = None,
          graded: Stage[Graded] | None = None) -> Verdict:
    """The catalog's entry for `check` on this evidence (the grader's call)."""
    verdict = catalog.BY_NAME[check].verdict
    assert verdict is not None
    return verdict(checks.Evidence(check, built or inspected(), graded, min_accuracy=0.95))


def test_it_passes_a_model_that_satisfies_the_rules_and_maps():
    verdict = judge("v1_constraints", inspected())
    assert verdict.outcome == checks.PASSED
    assert "3 NPs" in verdict.message
    assert verdict.metrics["program_memory_bytes"] == 40000
    assert "static" in verdict.metrics["mapping_figures"]


def test_it_fails_with_the_mappers_words_when_the_rules_allowed_the_model():
    verdict = judge("v1_constraints", inspected(mapping={"error": "Cannot map layer 'x'."}))
    assert verdict.outcome == checks.FAILED
    assert "documented rules): all satisfied, but" in verdict.message
    assert "Cannot map layer 'x'." in verdict.message


def test_it_fails_a_silent_cut_and_says_what_to_do():
    verdict = judge("v1_constraints", inspected(cut_at="quantization stopped at layer 'bn'"))
    assert verdict.outcome == checks.FAILED
    assert "quantization stopped at layer 'bn'" in verdict.message
    assert "move or remove that layer" in verdict.message


def test_it_says_at_which_precision_an_unsupported_declaration_was_checked():
    verdict = judge("v1_constraints", inspected(declared_bits_used=False))
    assert "checked at W4A4" in verdict.message


def test_it_skips_every_check_of_a_submission_that_did_not_load():
    broken = Stage(failure="the grading process ended with exit code 3")
    assert judge("loads", broken).outcome == checks.FAILED
    assert "exit code 3" in judge("loads", broken).message
    for name in catalog.FAST[1:]:
        assert judge(name, broken).outcome == checks.SKIPPED


def test_it_shows_the_gap_between_the_quantized_and_the_akida_accuracy():
    verdict = judge("akida_accuracy", graded=graded(quantized=0.97, akida=0.62))
    assert verdict.outcome == checks.FAILED
    assert "35.00 points below the quantized Keras model (97.00 %)" in verdict.message
    close = judge("akida_accuracy", graded=graded(quantized=0.97, akida=0.968))
    assert close.outcome == checks.PASSED and "points" not in close.message


def test_it_fails_the_quantized_accuracy_below_the_bar_and_names_the_bar():
    verdict = judge("quantized_accuracy", graded=graded(quantized=0.90))
    assert verdict.outcome == checks.FAILED
    assert "needs at least 95.00 %" in verdict.message
    assert verdict.metrics["float_accuracy"] == 0.98


def test_it_fails_the_akida_accuracy_of_a_model_that_cannot_classify():
    stage = graded(akida=None)
    assert stage.result is not None
    stage = Stage(result=replace(stage.result, cut_at="conversion stopped at layer 're_lu'"))
    verdict = judge("akida_accuracy", graded=stage)
    assert verdict.outcome == checks.FAILED
    assert "conversion stopped at layer 're_lu'" in verdict.message


def test_it_judges_the_published_runs_against_the_quality_bar():
    passing = quality.Measurement.recorded(PUBLISHED_PASS, where="the published run")
    verdict = checks.hardware_quality(passing, "replay", quality_max=200, report="figures")
    assert verdict.outcome == checks.PASSED
    assert verdict.message.startswith("Quality 122.8 < 200")
    assert verdict.metrics["source"] == "replay" and verdict.metrics["hardware_accuracy"] == 0.9761
    failing = quality.Measurement.recorded(PUBLISHED_FAIL, where="the published run")
    verdict = checks.hardware_quality(failing, "device", quality_max=200, report="figures")
    assert verdict.outcome == checks.FAILED
    assert verdict.message.startswith("Quality 989.6 >= 200")


def test_it_skips_without_a_board_and_gives_the_budget_as_an_estimate():
    budget = quality.energy_budget_mj(0.97, 40000, 200)
    verdict = checks.no_hardware(0.97, 40000, budget, 200)
    assert verdict.outcome == checks.SKIPPED
    assert "--akida-device" in verdict.message and "--akida-replay" in verdict.message
    assert f"{budget:.3f} mJ/frame" in verdict.message and "estimate" in verdict.message
    assert verdict.metrics["source"] == "none"


def test_it_shows_documented_rules_and_limits_found_by_mapping_apart() -> None:
    documented = Violation("v1.pool", "layer 3 pools wrongly. Fix: pool 2x2.", 3, "pool")
    measured = Violation("v1.cnp", "layer 5 has 512 input channels. Fix: fewer.", 5, "conv",
                         documented=False)
    stage = inspected(mapping={"error": "Filter size is too big to fit in a CNP"})
    assert stage.result is not None
    built = replace(stage.result, violations={"v1_constraints": (documented, measured)})
    message = judge("v1_constraints", Stage(result=built)).message
    lines = message.splitlines()
    assert lines[0] == "Akida 1.0 hardware constraints (BrainChip's documented rules):"
    assert lines[1] == "- layer 3 pools wrongly. Fix: pool 2x2."
    assert "found by mapping (not in BrainChip's constraints page)" in lines[2]
    assert lines[3] == "- layer 5 has 512 input channels. Fix: fewer."
    assert lines[4].endswith("Filter size is too big to fit in a CNP")


def test_it_keeps_the_documented_rules_satisfied_when_only_a_measured_limit_fires() -> None:
    measured = Violation("v1.cnp", "layer 5 has 512 input channels.", 5, "conv",
                         documented=False)
    stage = inspected(mapping={"error": "Filter size is too big to fit in a CNP"})
    assert stage.result is not None
    built = replace(stage.result, violations={"v1_constraints": (measured,)})
    message = judge("v1_constraints", Stage(result=built)).message
    assert message.startswith("Akida 1.0 hardware constraints (documented rules): all "
                              "satisfied, but\nlimits of the AKD1000 found by mapping")
