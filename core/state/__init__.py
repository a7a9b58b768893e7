"""The mergeable state: compensated sums, per-group sinks, calibration binning and sums, the
paired differences of a comparison, an ensemble's mixture sums. Every field is a sum, so
chunking and order do not matter."""
