"""Errors raised by post-processing.

They know nothing of gRPC. All derive from :class:`PostprocessError` (a :class:`ValueError`): the
network's outputs do not match what the recognition version says about them, or a post-processing
setting is invalid. Both are faults of the version (or of the network), not of the request.
"""

from __future__ import annotations

__all__ = ["InvalidConfigError", "MissingTensorError", "OutputShapeError", "PostprocessError"]


class PostprocessError(ValueError):
    """Base class of post-processing errors."""


class InvalidConfigError(PostprocessError):
    """A post-processing setting is invalid (a threshold out of range, a thresholds list of the wrong length...)."""


class MissingTensorError(PostprocessError):
    """A tensor named by the post-processing is not among the outputs given."""


class OutputShapeError(PostprocessError):
    """A tensor's shape does not fit the layout its post-processing declares."""
