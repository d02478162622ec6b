"""evaluator/jobs.py: the typed jobs both sides of the trusted process boundary share."""

from __future__ import annotations

import json

import pytest

from pytest_akida_grade.codec import RecordError
from pytest_akida_grade.evaluator import jobs

DATA = jobs.DataSpec(path="/d/mnist.npz", sha256="ab", seed=0, validation_split=0.1,
                     train_limit=0, test_limit=500)
INSPECT = jobs.Inspect(architecture="a/model.json", weights="a/weights.npz", seed=0,
                       weight_bits=4, activation_bits=4, route="weights file",
                       calibration=jobs.Calibration(data=DATA, samples=128))
GRADE = jobs.Grade(architecture="a/model.json", weights="a/weights.npz", data=DATA,
                   out="o/model.fbz", weight_bits=2, activation_bits=4, attempts=1,
                   calibration_samples=128, seed=0, route="weights file")


@pytest.mark.parametrize("job", [
    INSPECT, GRADE, jobs.InspectAndGrade(inspect=INSPECT, grade=GRADE),
    jobs.Train(architecture="a", weights="w", data=DATA, out="o", epochs=1, batch_size=64,
               seed=0)])
def test_a_job_comes_back_as_it_was_sent_through_json(job: jobs.Job) -> None:
    wire = json.loads(json.dumps({"id": 7, **job.to_json()}))
    assert jobs.from_json(wire) == job


@pytest.mark.parametrize(("wire", "words"), [
    ({"kind": "format_disk"}, "unknown kind str 'format_disk'"),
    ({**GRADE.to_json(), "bits": [4, 4]}, r"Grade: unknown fields \['bits'\]"),
    ({k: v for k, v in GRADE.to_json().items() if k != "out"}, r"Grade: missing fields \['out'\]"),
    ({**GRADE.to_json(), "data": [1, 2]}, "Grade.data: expected an object, got list of 2"),
    ({**GRADE.to_json(), "weight_bits": [4]}, "Grade.weight_bits: expected int | float"),
])
def test_a_malformed_job_is_refused_naming_the_field(wire: object, words: str) -> None:
    with pytest.raises(RecordError, match=words):
        jobs.from_json(wire)


def test_jobs_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        jobs.DataSpec("/d", "ab", 0, 0.1, 0, 0)  # type: ignore[misc]
