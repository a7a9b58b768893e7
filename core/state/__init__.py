"""The mergeable state: compensated sums, per-group sinks, calibration binning and sums, the
paired differences of a comparison, an ensemble's mixture sums. Every field is a sum, so
chunking and order do not matter.

The rule that makes states portable (``portable``): a state component keeps every sum it adds
up in a ``sinks.Sums``, held in an attribute (or a list, tuple or dict of them) of an object of a
module of this package. ``portable.named_sums`` finds them all by attribute path, and state
files and Dask tasks carry them by that name, so a new component needs no serialisation code.
Anything else a component holds must follow from the options (bins, grids, lookup tables).
"""
