"""Reports: the dataclasses every output reads (each field declared once as a metric or as
information), their derivation from a state, the metric catalogue, and the quality gates."""
