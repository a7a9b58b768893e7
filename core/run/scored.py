"""What one chunk contributed to a scorer: its element losses, aligned back to its rows."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from gaussnll.core.loss import HALF_LOG_2PI
from gaussnll.core.state.nonfinite import expand_rows


@dataclass(frozen=True)
class Scored:
    """What one chunk contributed: the element losses of its scored rows (no constant), which
    rows were kept (None: all of them), for an ensemble the mixture's element losses, and for
    samples the draws' element CRPS. A quantile model's losses (``name``: ``wis``) are each
    row's weighted interval score. ``gaussian``: the mean and variance (as given, before the
    floor) the kept rows were scored as (an ensemble's or samples' moment-matched), for
    ``compare``'s closed-form scores; None for a quantile model."""

    loss: Tensor
    kept: Tensor | None
    mixture: Tensor | None = None
    crps: Tensor | None = None
    name: str = "nll"
    gaussian: tuple[Tensor, Tensor] | None = None

    def per_row(self, full: bool) -> Tensor:
        """The losses aligned with the chunk's rows (NaN where skipped), with the constant if
        ``full``: what torch's ``reduction='none'`` gives."""
        return self._aligned(self.loss, full)

    def mixture_per_row(self, full: bool) -> Tensor | None:
        """The mixture's element losses as ``per_row`` gives the Gaussian's (None: no
        ensemble)."""
        return None if self.mixture is None else self._aligned(self.mixture, full)

    def crps_per_row(self) -> Tensor | None:
        """The draws' element CRPS aligned as ``per_row`` (None: no samples section)."""
        return None if self.crps is None else self._aligned(self.crps, False)

    def _aligned(self, loss: Tensor, full: bool) -> Tensor:
        loss = loss + HALF_LOG_2PI if full and self.name == "nll" else loss
        return loss if self.kept is None else expand_rows(loss, self.kept, float("nan"))
