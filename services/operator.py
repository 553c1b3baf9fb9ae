"""The operator's way into storage from outside the services: ``imagepipe reprocess|prune``.

Reprocessing and pruning act on every stored image, so they are no part of
the HTTP API (its API keys belong to clients, who must not re-render or
prune each other's images): like ``nameko shell``, they need the broker's
credentials.  ``storage_rpc`` is nameko's standalone ``ClusterRpcProxy`` to
the storage service, configured from ``config.yaml`` as ``nameko run``
reads it (the serializer and the broker must match the services').
"""
from contextlib import contextmanager

import yaml
from nameko.exceptions import RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy

from imagepipe.errors import Unavailable
from services.extensions.amqp import BROKER_ERRORS
from services.extensions.rpc import register_remote_errors


def read_config(path):
    """A config file with nameko's YAML rules (``${VAR:default}``, ``!raw_env_var``)."""
    from nameko.cli.main import setup_yaml_parser

    setup_yaml_parser()
    with open(path) as config_file:
        return yaml.safe_load(config_file)


@contextmanager
def storage_rpc(config_path, amqp_uri=None, timeout=60):
    """A proxy of the storage service; every call waits ``timeout`` seconds at most.

    A storage that does not answer, or a broker that cannot be reached, is
    ``Unavailable`` (an operator gets one line, not a traceback).
    """
    config = read_config(config_path)
    if amqp_uri:
        config["AMQP_URI"] = amqp_uri
    register_remote_errors()  # storage's errors arrive as imagepipe.errors types
    try:
        with ClusterRpcProxy(config, timeout=timeout) as cluster:
            yield cluster.storage
    except RpcTimeout:
        raise Unavailable("storage did not answer within {:g} s: is it running?".format(
            timeout)) from None
    except BROKER_ERRORS as exc:
        raise Unavailable("cannot reach the broker at {} ({})".format(
            _without_password(config["AMQP_URI"]), exc)) from None


def _without_password(uri):
    scheme, _, rest = str(uri).partition("://")
    credentials, at, host = rest.rpartition("@")
    return "{}://{}{}{}".format(scheme, credentials.split(":")[0], at, host) if at else uri
