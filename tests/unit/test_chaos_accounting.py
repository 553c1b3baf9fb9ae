"""The chaos scenario counts a fault only once it happened, and fails a run that missed one;
its audit holds the blobs stored against the catalog."""
import random
import time

from imagepipe.settings import default_db_url
from imagepipe.storage.catalog import Catalog
from tests.helpers import ORIGINAL_INFO, RENDITION_META
from tests.scenarios import chaos


def test_a_fault_that_cannot_be_injected_is_recorded_not_counted(monkeypatch):
    def no_rabbitmqctl(down_seconds):
        raise FileNotFoundError("rabbitmqctl")

    monkeypatch.setattr(chaos, "rabbitmq_restart", no_rabbitmqctl)
    stats = chaos.Stats()
    chaos.run_chaos([(0.0, "restart_broker")], {}, stats, random.Random(1), time.monotonic())
    assert stats.counts["broker_restarts"] == 0
    assert stats.fault_errors == ["restart_broker: FileNotFoundError('rabbitmqctl')"]


def test_faults_missing_names_each_fault_injected_other_than_asked():
    counts = {"imaging_kills": 2, "storage_restarts": 0, "broker_restarts": 1, "client_retries": 7}
    requested = {"imaging_kills": 2, "storage_restarts": 1, "broker_restarts": 1}
    assert chaos.faults_missing(requested, counts) == {"storage_restarts": (1, 0)}
    assert chaos.faults_missing({"imaging_kills": 2}, counts) == {}


class ListedBucket:
    """What the audit reads of an S3 server: a direct listing of a bucket."""

    def __init__(self, keys):
        self.keys = keys

    def objects(self, bucket):
        return list(self.keys)


def test_the_audit_reads_the_bucket_against_the_catalog(tmp_path):
    image_id, stray = "ab" + "1" * 30, "cd" + "2" * 30
    catalog = Catalog.from_url(default_db_url(str(tmp_path)))
    catalog.add_image(image_id, "0" * 64, ORIGINAL_INFO, 10)
    catalog.complete(image_id, [("thumb", dict(RENDITION_META, bytes=3, sha256="1" * 64)),
                                ("medium", dict(RENDITION_META, bytes=3, sha256="2" * 64))])
    catalog.engine.dispose()
    keys = ["originals/ab/" + image_id, "variants/ab/{}/thumb.webp".format(image_id),
            "originals/cd/" + stray, "staging/" + "f" * 32]
    bucket = ListedBucket([chaos.S3_PREFIX + "/" + key for key in keys] + ["elsewhere/x"])
    audit = chaos.storage_audit(chaos.Blobs(tmp_path, bucket))
    assert audit["renditions"] == 2 and audit["duplicated"] == []
    assert audit["orphans"] == ["originals/cd/" + stray, "elsewhere/x"]
    assert audit["missing"] == ["variants/ab/{}/medium.webp".format(image_id)]
    assert audit["temporary_files"] == ["staging/" + "f" * 32]
