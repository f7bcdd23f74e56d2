"""What the WebUI's AIDI edit mode needs beside :func:`lib_guided.edit_job.aidi_edit`: Interrupt and Skip.

The edit replaces one ``sample_img2img`` call of the WebUI's sampler; the WebUI's own inpaint blending
after sampling still applies, so pixels outside an inpaint mask stay exactly the original.
"""

from __future__ import annotations


class Interrupted(Exception):
    """The user pressed Interrupt or Skip during our own sampling loop."""


class StoppableModel:
    """Forwards to the model, checking the WebUI's interrupt flag before every evaluation."""

    def __init__(self, model, should_stop):
        self._model, self._should_stop = model, should_stop

    def __getattr__(self, name):
        return getattr(self._model, name)

    @property
    def evals(self) -> int:
        return self._model.evals

    def eps(self, x, sigma, cond):
        if self._should_stop():
            raise Interrupted
        return self._model.eps(x, sigma, cond)
