"""PLACEHOLDER (replaced by the mapper explanations of issue 13): raw messages, unchanged."""

from __future__ import annotations

from pytest_akida_grade.rules.specs import Specs


def explain_conversion_error(message: str, layers: Specs) -> str:
    return message


def explain_mapping_error(message: str, layers: Specs) -> str:
    return message
