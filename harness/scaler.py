"""The scaler (``python -m imagepipe scale``) as a real process, and what it reports.

Its imaging processes are its children: ``imaging_pids()`` finds them in
/proc (the truth, whatever the scaler believes), ``metrics()`` reads what the
scaler exports on SCALE_METRICS_ADDRESS.
"""
import sys

import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import procstat
from harness.processes import ServiceProcess, free_port


class ScalerProcess(ServiceProcess):
    """``python -m imagepipe scale`` with ``env`` plus its metrics on a free port."""

    def __init__(self, env, log_dir, label="scaler", die_with_parent=False):
        self.metrics_port = free_port()
        env = dict(env, SCALE_METRICS_ADDRESS="127.0.0.1:{}".format(self.metrics_port))
        super().__init__("imagepipe", env, log_dir, label, die_with_parent)

    @property
    def command(self):
        return [sys.executable, "-m", "imagepipe", "scale", "--config", "config.yaml"]

    def metrics(self):
        """{sample name or name{label=value}: value} from the scaler's exporter; {} if it does not answer."""
        try:
            text = requests.get("http://127.0.0.1:{}/metrics".format(self.metrics_port), timeout=5).text
        except requests.RequestException:
            return {}
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join("{}={}".format(*item) for item in sorted(sample.labels.items()))
                values[sample.name + ("{" + labels + "}" if labels else "")] = sample.value
        return values

    def running(self):
        """Imaging processes the scaler says run (None if it does not answer)."""
        return self.metrics().get("imagepipe_scaler_processes{state=running}")

    def imaging_pids(self):
        """Live imaging processes under the scaler (render workers excluded), from /proc."""
        if not self.alive:
            return []
        return [pid for pid in procstat.descendants(self.pid) if _runs_imaging(pid)]


def _runs_imaging(pid):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as cmdline:
            return b"services.imaging" in cmdline.read().split(b"\0")
    except OSError:
        return False
