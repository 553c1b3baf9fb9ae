"""Performance benchmark of the image pipeline: ``python -m bench.run``."""
