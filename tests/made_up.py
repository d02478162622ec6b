"""Made-up student modules for the plugin's tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Small enough for CI on 2 cores, real enough to learn: MNIST subsets and one short epoch.
FAST_SETTINGS = {
    "akida_students": "students",
    "akida_epochs": "1",
    "akida_batch_size": "64",
    "akida_train_limit": "3000",
    "akida_test_limit": "500",
    "akida_calibration_samples": "128",
    "akida_min_accuracy": "0.5",
    "akida_timeout": "60",
    "akida_cache_dir": "{cache}",
}


def fast_ini(**changes: str | None) -> str:
    """The fast settings as a pytest.ini; a change of None drops that setting."""
    settings = {**FAST_SETTINGS, **changes}
    lines = [f"{key} = {value}" for key, value in settings.items() if value is not None]
    return "\n[pytest]\n" + "\n".join(lines) + "\n"


FAST_INI = fast_ini()

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


SAVE_WEIGHTS = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("submission", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.build_model()
if len(sys.argv) > 3:  # the harness's trained weights: a plain .npz of the arrays, in order
    import numpy as np
    with np.load(sys.argv[3]) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
model.save_weights(sys.argv[2])
"""


def save_weights(module: Path, target: Path, loaded_from: Path | None = None) -> None:
    """`model.save_weights(target)` with tf_keras, in a child process (no TensorFlow here).

    A `<name>.weights.h5` name makes tf_keras write its v3 format, as a student's file would be.
    """
    extra = [str(loaded_from)] if loaded_from else []
    subprocess.run([sys.executable, "-c", SAVE_WEIGHTS, str(module), str(target), *extra],
                   check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
