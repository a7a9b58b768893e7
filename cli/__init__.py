"""gaussnll's command line: parse options, call ``gaussnll.core``, render the report."""
