"""Small statistics helpers (no numpy)."""
import math
import statistics


def percentile(values, pct):
    """Linear-interpolated percentile (numpy's default); None for no values."""
    values = sorted(values)
    if not values:
        return None
    rank = (len(values) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def spread(values):
    """(min, max) of the values that exist, or (None, None)."""
    values = [value for value in values if value is not None]
    return (min(values), max(values)) if values else (None, None)
