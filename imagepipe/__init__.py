"""Plain, broker-free building blocks of the image pipeline.

Nothing in this package imports nameko: the services in ``services/`` wire
these modules to RabbitMQ, and the unit tests exercise them directly.
"""
