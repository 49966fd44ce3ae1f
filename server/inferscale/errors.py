"""Why an inference request was not answered with a result: the domain's words, not HTTP's.

The protocol layer (api/errors.py) maps each to a status code in one table; the
model, the executor and the model process raise them without knowing that.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every reason an inference request got no result."""


class Rejected(InferenceError):
    """Not admitted: nothing was started for the request, so a retry is safe."""


class Overloaded(Rejected):
    """Every model slot and queue place of the pod is taken."""


class ShuttingDown(Rejected):
    """The server is draining: it finishes admitted work and takes no more."""


class ModelUnavailable(Rejected):
    """There is no loaded model to run on: still loading, failed to load, or restarting."""


class InferenceLost(InferenceError):
    """Admitted, then the model process died before answering; the request may be retried."""


class InferenceTimedOut(InferenceError):
    """Admitted, then ran past its time limit: answered, though the model may still hold its slot."""


class InferenceFailed(InferenceError):
    """The model raised while serving an admitted request."""
