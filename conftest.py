"""Root conftest of the grading repository.

The plugin itself is installed (`make setup`) and loaded through its pytest11 entry point; here we
only enable pytester for the project's own tests (pytest allows `pytest_plugins` only at the root).
"""

pytest_plugins = ["pytester"]
