"""The assignment's fixed facts: the images, the classes, the precisions Akida 1.0 runs, the bar.

No imports from this package: rules, data, the evaluator and the board read them from here.
"""

from __future__ import annotations

INPUT_SHAPE = (28, 28, 1)  # MNIST images as the model takes them
IMAGE_SHAPE = INPUT_SHAPE[:2]
NUM_CLASSES = 10
SUPPORTED_SCHEMES = ((4, 4), (4, 1), (2, 4))  # (weight bits, activation bits) on Akida 1.0
MIN_ACCURACY = 0.95  # the quantized and the Akida model (akida_min_accuracy)
QUALITY_MAX = 200.0  # full credit below it (akida_quality_max)
