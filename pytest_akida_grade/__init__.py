"""pytest-akida-grade: grade 'deploy your MNIST model down to the Akida hardware' submissions."""

from __future__ import annotations

__version__ = "0.1.0"
