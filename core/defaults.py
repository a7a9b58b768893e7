"""Default options, in a module light enough for the CLI to import before torch."""

DEFAULT_CHUNK_ROWS = 6 << 14  # 98,304: see bench/ (speed against peak RSS with calibration)
DEFAULT_EPS = 1e-6
DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
DEFAULT_PIT_BINS = 20
