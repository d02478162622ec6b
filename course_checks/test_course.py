"""The course's own checks: ordinary pytest tests, once per submission through `akida_student`.

They live here, never in student_models/: a file there is a student's (data the grader never
imports); this directory is the instructor's code, collected by `make grade` and a bare `pytest`
(`akida_course_checks` and `testpaths` in pyproject.toml).
"""

PARAMETER_BUDGET = 20_000


def test_at_most_20000_parameters(akida_student):
    assert akida_student.params <= PARAMETER_BUDGET, (
        f"{akida_student.params:,} parameters: the course's budget is {PARAMETER_BUDGET:,}; "
        "use fewer filters or a smaller classifier")
