"""Fixtures: a real pipeline (all three services) in its own RabbitMQ vhost.

``rabbit_config``, ``runner_factory`` and ``container_factory`` come from
nameko's pytest plugin; ``rabbit_config`` creates a fresh vhost per test
through the RabbitMQ management API.

Tests marked ``corpus`` read Pillow's real-world image corpus
(tests/corpus.py): without it they are skipped -- failed under ``CI=true`` --
and the summary at the end of the run says why and how to get it.
"""

import pytest

from harness.processes import free_port
from tests import corpus
from tests.helpers import WebSession, load_config, running_in_ci

CORPUS_TESTS = pytest.StashKey[int]()  # how many collected tests read the corpus


def pytest_configure(config):
    # CI replays the same examples every run, so a red CI is a reproducible
    # find, not a roll of the dice; local runs keep exploring new inputs
    from hypothesis import settings
    settings.register_profile("ci", derandomize=True, print_blob=True)
    if running_in_ci():
        settings.load_profile("ci")


def pytest_collection_finish(session):
    # after -m/-k deselection: the tests that will really be run
    session.config.stash[CORPUS_TESTS] = sum(
        1 for item in session.items if item.get_closest_marker("corpus"))


def pytest_runtest_setup(item):
    if item.get_closest_marker("corpus") is None:
        corpus.unmarked_test = item.nodeid
        return
    corpus.unmarked_test = None
    reason = corpus.missing_reason()
    if reason is None:
        return
    if running_in_ci():
        pytest.fail("{} -- CI=true requires the corpus suites; {}".format(
            reason, corpus.HOW_TO_GET_IT), pytrace=False)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter, config):
    count = config.stash.get(CORPUS_TESTS, 0)
    if not count:
        return
    reason = corpus.missing_reason()
    terminalreporter.write_sep("-", "real-world image corpus")
    if reason is None:
        terminalreporter.write_line("{} corpus tests ran on {}".format(count, corpus.corpus_location()))
        return
    verdict = "FAILED (CI=true)" if running_in_ci() else "NOT RUN (skipped)"
    terminalreporter.write_line("{} corpus tests {}: {}".format(count, verdict, reason), yellow=True)
    terminalreporter.write_line("to run them: " + corpus.HOW_TO_GET_IT)


@pytest.fixture
def job_queue_type():
    """JOB_QUEUE_TYPE of the pipeline; tests parametrize it to run on quorum queues too."""
    return "classic"


@pytest.fixture
def rpc_queue_type():
    return "classic"


@pytest.fixture
def pipeline_config(rabbit_config, tmp_path, job_queue_type, rpc_queue_type):
    config = load_config()
    config.update(rabbit_config)
    config["JOB_QUEUE_TYPE"] = job_queue_type
    config["RPC_QUEUE_TYPE"] = rpc_queue_type
    config["WEB_SERVER_ADDRESS"] = "127.0.0.1:{}".format(free_port())
    config["STORAGE_ROOT"] = str(tmp_path / "storage")
    config["STORAGE_DB"] = None
    config["RPC_TIMEOUT"] = 5
    config["JOB_RETRY_DELAYS"] = "0.2,0.5"
    config.pop("LOGGING", None)
    return config


@pytest.fixture
def base_url(pipeline_config):
    return "http://{}".format(pipeline_config["WEB_SERVER_ADDRESS"])


@pytest.fixture
def web(base_url):
    with WebSession(base_url) as session:
        yield session


@pytest.fixture
def pipeline(runner_factory, pipeline_config):
    """gateway + imaging + storage + webhooks in one runner, like `make run`."""
    from services.gateway import GatewayService
    from services.imaging import ImagingService
    from services.storage import StorageService
    from services.webhooks import WebhookService

    runner = runner_factory(pipeline_config, GatewayService, ImagingService, StorageService,
                            WebhookService)
    runner.start()
    return runner


# -- a real S3-compatible server (SeaweedFS), for the S3 blob backend -------

@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS for the session; a test that needs it fails if it cannot start."""
    from tests.s3server import SeaweedS3, ServerFailed

    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except ServerFailed as exc:
        pytest.fail("the S3 test server could not start: {}".format(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def s3_bucket():
    """A fresh bucket name per test (the backend creates it)."""
    import uuid

    return "imagepipe-test-{}".format(uuid.uuid4().hex[:12])
