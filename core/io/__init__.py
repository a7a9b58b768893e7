"""Files to tensors: sources (files, directories, globs, stdin), readers (Parquet, Arrow, CSV in
ranges), group keys, conversion to tensors, host-to-device transfer, prefetching; and the
per-row writers and a run's all-or-nothing output files. Nothing here knows about losses or
reports."""
