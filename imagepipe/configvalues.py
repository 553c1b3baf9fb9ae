"""Parsing of single config.yaml values, shared by every settings class."""


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
