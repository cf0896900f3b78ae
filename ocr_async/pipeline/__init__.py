"""Many inputs to records: where inputs come from, the pool of workers, resuming.

The pipeline takes what the caller names (files, folders, URL lists,
manifests), sends each through the core's pre-check stage
(:mod:`ocr_async.precheck`) and client, and writes one record per input to
a sink (:class:`ocr_async.models.RecordSink`). It imports the core only,
never :mod:`ocr_async.outputs` or :mod:`ocr_async.cli`.

* :mod:`~ocr_async.pipeline.sources`: files, folders (the one folder walk)
  and URL lists, lazily;
* :mod:`~ocr_async.pipeline.manifest`: inputs from a manifest (JSONL or CSV),
  each with the caller's id and metadata;
* :mod:`~ocr_async.pipeline.batch`: :func:`run_batch`, the fixed pool of
  workers, one record per input;
* :mod:`~ocr_async.pipeline.record_stream`: :func:`recognize_many`, the
  batch as an async iterator of records;
* :mod:`~ocr_async.pipeline.resume`: what an earlier output already holds;
  :mod:`~ocr_async.pipeline.sourceset`, the compact set of names it and
  duplicate detection keep; :mod:`~ocr_async.pipeline.atomicfile`, how a
  mended output replaces the old one;
* :mod:`~ocr_async.pipeline.verify`: whether an output holds exactly one
  record for every expected input;
* :mod:`~ocr_async.pipeline.fdlimit`: how many workers the open-file limit
  leaves room for;
* :mod:`~ocr_async.pipeline.cluster`: a run spread over a Dask cluster,
  listed and written here, prepared and sent by the workers (the
  ``cluster`` extra).
"""
