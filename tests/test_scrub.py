# ruff: noqa: E501  (TensorFlow messages as TensorFlow writes them)
"""scrub.py: what a student reads carries no traceback of ours, no host path, no op name."""

from __future__ import annotations

from pytest_akida_grade.scrub import for_student

TF_ERROR = """not graded: InvalidArgumentError: Graph execution error:

Detected at node sequential/conv2d/bias_quantizer/assert_less_equal/Assert/AssertGuard/Assert defined at (most recent call last):
  File "/work/main/pytest_akida_grade/evaluator/server.py", line 57, in handle
    return {"ok": JOBS[request["kind"]](request, self.progress(request["id"]))}
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/quantizeml/layers.py", line 9, in call
    tf.debugging.assert_less_equal(x, y)
{{function_node __wrapped__AddV2_device_/job:localhost/replica:0/task:0/device:CPU:0}} OOM [[{{node sequential/conv2d/Assert}}]]"""


def test_it_takes_out_our_frames_paths_and_tensorflow_op_names() -> None:
    text = for_student(TF_ERROR)
    for internal in ("Traceback", 'File "/', "{{function_node", "{{node", "/work/main",
                     "server.py", "assert_less_equal", "Graph execution error"):
        assert internal not in text, internal
    assert text.startswith("not graded: InvalidArgumentError:")


def test_it_keeps_the_students_own_frames_and_the_exception_line() -> None:
    raw = ('Traceback (most recent call last):\n'
           '  File "/tmp/akida-grade-x/in/alice.py", line 12, in build_model\n'
           '    return keras.Sequential(layers)\n'
           '  File "/usr/lib/python3/dist-packages/tf_keras/src/engine.py", line 3, in f\n'
           '    raise ValueError("bad")\n'
           'ValueError: bad input shape')
    assert for_student(raw) == ("alice.py, line 12, in build_model\n"
                                "ValueError: bad input shape")


def test_it_shows_class_reprs_as_plain_layer_names() -> None:
    raw = "unsupported layer <class 'tf_keras.src.layers.convolutional.conv2d.Conv2D'>"
    assert for_student(raw) == "unsupported layer Conv2D"


def test_it_leaves_a_message_in_the_students_words_alone() -> None:
    message = ("- layer 3 'max_pooling2d' (MaxPooling2D): a pooling must be followed by a "
               "convolution. Fix: add a Conv2D after it (96.72 %, 1.5 mJ/frame, x/y).")
    assert for_student(message) == message
