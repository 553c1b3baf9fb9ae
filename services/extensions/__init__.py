"""The nameko extensions the services declare -- entrypoints and dependencies.

``@rpc``, ``@http``, ``@queue_handler``, ``@event_subscriber`` and
``@configured_timer`` in a service file come from here, not from nameko:
each is nameko's own, changed where the pipeline needs it, and its module
says how and why.  One module per mechanism:

- ``amqp``: broker errors, queue declaration, confirmed publishing;
- ``rpc``: ``@rpc`` and ``StorageRpc``;
- ``events``: ``JobDispatcher``, ``@queue_handler``, ``@event_subscriber``;
- ``http``: ``@http`` and its web server;
- ``timer``: ``@configured_timer``;
- ``retries``: ``JobQueue`` (retries, re-dispatches, dead letters);
- ``providers``: settings, the image store, the render pool, webhooks;
- ``live``: the gateway's live status streams;
- ``observability``: metrics and log correlation;
- ``health``: ``GET /health`` beside the metrics of processes without a web server.

Several modules subclass nameko or eventlet classes and override methods
that are theirs to change; ``PATCHED_FOR`` names the versions they were
written against, and tests/unit/test_extension_versions.py fails when the
installed versions differ or what the overrides rely on has moved.
"""

PATCHED_FOR = {"nameko": "2.14.1", "eventlet": "0.41.3"}
