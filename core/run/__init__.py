"""Running a score: the scorer (chunks into a state), scoring threads, the file engine, pairing
and comparison of two files, and the ``score`` API for every kind of source."""
