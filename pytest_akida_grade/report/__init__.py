"""Grade files from student records: `files` (JSON, CSV, Gradescope, merge), `table` (the HTML
class table and standalone page), `plot` (the quality-vs-accuracy SVG) and `cli` (`merge`).

Pure Python (no pytest, no TensorFlow); they read only student records (docs/contracts.md) and the
catalog. Import the submodules directly: this package re-exports nothing.
"""
