"""Runs spread over a Dask cluster: listed and written here, prepared and sent by the workers.

``ocr-async run ... --cluster tcp://SCHEDULER:8786`` (and
:class:`ClusterRun` in the library). Three places, three modules:

* :mod:`~ocr_async.pipeline.cluster.driver`, on this machine: lists the
  inputs, hands them out in chunks (Dask tasks), collects the records as
  they finish and writes them to the one output, with the summary, progress,
  ``--resume`` and exit codes of a local run;
* :mod:`~ocr_async.pipeline.cluster.worker`, on each worker: a chunk
  through the pre-check and the worker's own :class:`~ocr_async.OcrClient`
  (:func:`~ocr_async.pipeline.batch.run_batch`), each record handed to the
  run's mailbox;
* :mod:`~ocr_async.pipeline.cluster.board`, in the scheduler: the run's
  mailbox (which also keeps a chunk run again from giving an input a second
  record) and, without ``--shared-quota``, the quota the workers share
  (:mod:`~ocr_async.pipeline.cluster.quota` is the store a worker's
  :class:`~ocr_async.shared_quota.SharedQuota` uses there), so that a Dask
  run needs no Redis.

The scheduler and the workers need ``ocr-async[cluster]`` installed (the
scheduler runs the board's functions); files must be readable at the same
absolute path on every worker. ``docs/scale-out.md`` says how to start a
cluster, and what happens on each failure.
"""

from __future__ import annotations

from ocr_async.pipeline.cluster.driver import (
    WORKER_FAILED,
    ClusterLostError,
    ClusterRun,
    ClusterUnavailableError,
)
from ocr_async.pipeline.cluster.quota import SchedulerStore

__all__ = [
    "WORKER_FAILED",
    "ClusterLostError",
    "ClusterRun",
    "ClusterUnavailableError",
    "SchedulerStore",
]
