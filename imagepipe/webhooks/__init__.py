"""Completion webhooks, the plain part (no nameko, no AMQP).

- ``urls``: which callback URLs are allowed (the SSRF rule);
- ``signing``: the HMAC signature of a delivery and its check;
- ``delivery``: the pinned POST and the retry decision.

``services/webhooks.py`` is the service that delivers them.
"""
