"""Running the real services for the tests and the benchmark.

Both suites start ``nameko run`` processes against scratch RabbitMQ vhosts
and read config.yaml the way ``nameko run`` does; this package is the one
place for that, importable by both (the product itself never imports it):

- ``config``: the repository's root and config.yaml, read with nameko's rules;
- ``processes``: ``ServiceProcess`` and the environment services get;
- ``rabbit``: ``ScratchVhost`` and broker restarts;
- ``procstat``: CPU time and memory of processes (render workers too), from /proc;
- ``waiting``: ``wait_until``, the one polling loop.
"""
