"""Parsing of single config.yaml values, shared by every settings class.

Environment substitution hands every value over as a string (or YAML's own
type when the file spells it out), so each parser accepts both.
"""


def as_bool(value, name, default=False):
    """YAML may hand over a bool already; environment strings are spelled out."""
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("{} must be a boolean, true or false, not {!r}".format(name, value))


def as_list(value, default=()):
    """A YAML list, or a comma-separated string; empty items are dropped."""
    if value in (None, ""):
        return list(default)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (int, float)):  # one value: "${JOB_RETRY_DELAYS:...}" set to "5"
        return [value]
    return list(value)


def positive(value, name, default):
    """A number above zero; missing or empty means ``default``."""
    if value in (None, ""):
        return default
    number = float(value)
    if number <= 0:
        raise ValueError("{} must be a positive number, not {!r}".format(name, value))
    return number


def positive_int(value, name, default):
    """A whole number of at least 1; missing or empty means ``default``."""
    number = int(value) if value not in (None, "") else default
    if number < 1:
        raise ValueError("{} must be at least 1, not {}".format(name, number))
    return number


def non_negative_int(value, name, default):
    """A whole number of at least 0; missing or empty means ``default``."""
    number = int(value) if value not in (None, "") else default
    if number < 0:
        raise ValueError("{} must be 0 or more, not {}".format(name, number))
    return number


class PortRanges:
    """TCP ports as ranges: ``80,443,8000-8999``; supports ``in`` and prints as written."""

    def __init__(self, ranges):
        self.ranges = tuple(ranges)

    def __contains__(self, port):
        return any(low <= port <= high for low, high in self.ranges)

    def __eq__(self, other):
        return isinstance(other, PortRanges) and self.ranges == other.ranges

    def __hash__(self):
        return hash(self.ranges)

    def __repr__(self):
        return "PortRanges({})".format(self)

    def __str__(self):
        return ", ".join(str(low) if low == high else "{}-{}".format(low, high)
                         for low, high in self.ranges)


def as_ports(value, name, default):
    """``80,443``, ``8000-8999`` or a YAML list; ``any`` means no restriction (None)."""
    if value in (None, ""):
        return default
    if str(value).strip().lower() == "any":
        return None
    ranges = []
    for part in as_list(value):
        low, _, high = str(part).partition("-")
        try:
            low, high = int(low), int(high or low)
        except ValueError:
            raise ValueError("{} must list ports or ranges like 80,443,8000-8999, not {!r}".format(
                name, value)) from None
        if not 1 <= low <= high <= 65535:
            raise ValueError("{}: {!r} is not a port range within 1-65535".format(name, part))
        ranges.append((low, high))
    return PortRanges(ranges)
