"""Metrics and logs, the plain part: metric definitions and log formatting.

``services/extensions/observability.py`` wires them to nameko workers.
"""
