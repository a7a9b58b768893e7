"""The set-up of each worker process of a ``--dask local`` cluster (a Dask preload): Ctrl-C
is the client's to handle (it stops the cluster), and the worker's stderr goes nowhere, so only
gaussnll's one line reaches the terminal. Not used with ``verbose`` (``--debug``)."""

from __future__ import annotations

import os
import signal


def dask_setup(worker: object) -> None:
    """Run by Dask in each worker process as it starts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
