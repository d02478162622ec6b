"""Made-up student modules for the plugin's tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# Small enough for CI on 2 cores, real enough to learn: MNIST subsets and one short epoch.
FAST_INI = """
[pytest]
akida_students = students
akida_epochs = 1
akida_batch_size = 64
akida_train_limit = 3000
akida_test_limit = 500
akida_calibration_samples = 128
akida_min_accuracy = 0.5
akida_timeout = 60
akida_cache_dir = {cache}
"""

TEMPLATE_LAYERS = """
    keras.layers.Rescaling(1. / 255, input_shape=(28, 28, 1)),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.MaxPooling2D((2, 2), padding="same"),
    keras.layers.Conv2D(16, 3, padding="same"),
    keras.layers.ReLU(max_value=3.0),
    keras.layers.MaxPooling2D((2, 2), padding="same"),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
"""

# The template plus a convolution after the last pooling: passes every fast check.
GOOD_LAYERS = TEMPLATE_LAYERS.replace(
    "    keras.layers.Flatten(),",
    '    keras.layers.Conv2D(16, 3, padding="same"),\n'
    "    keras.layers.ReLU(max_value=3.0),\n"
    "    keras.layers.Flatten(),")


def student_source(layers: str = GOOD_LAYERS, *, bits: tuple[object, object] = (4, 4),
                   extra: str = "") -> str:
    """A submission module whose build_model() returns a Sequential of `layers`."""
    return (
        "import tf_keras as keras\n\n"
        f"WEIGHT_BITS = {bits[0]!r}\nACTIVATION_BITS = {bits[1]!r}\n\n"
        "def build_model():\n"
        "    return keras.models.Sequential([" + textwrap.indent(layers, "    ") + "    ])\n"
        + textwrap.dedent(extra)
    )


def add_student(pytester: pytest.Pytester, name: str, source: str) -> Path:
    path = pytester.path / "students" / f"{name}.py"
    path.write_text(source)
    return path
