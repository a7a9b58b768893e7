"""The optional extras a flag needs (``gaussnll[html]``, ``gaussnll[dask]``): checked before any
work, so a missing one is a usage error (exit 2) that says how to install it, never an internal
error from a failed import deep in a run."""

from __future__ import annotations

import importlib.util

from gaussnll.core import UsageError


def install_hint(extra: str) -> str:
    """How to install ``extra``: from the package index, or from a checkout of the source."""
    return f"pip install 'gaussnll[{extra}]', or from a checkout pip install -e '.[{extra}]'"


def require_extra(module: str, extra: str, needs: str) -> None:
    """A usage error with the install line when ``module`` of ``extra`` is missing;
    ``needs``: what the flag does with it."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"{needs}, which is not installed: {install_hint(extra)}")


def require_matplotlib() -> None:
    require_extra("matplotlib", "html", "--html draws its figures with matplotlib")


def require_dask() -> None:
    require_extra("distributed", "dask", "--dask runs on Dask's distributed scheduler")
