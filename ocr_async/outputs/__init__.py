"""Where records go: the JSONL output, text files, progress, page formats, logs and metrics.

Outputs take finished records (:class:`~ocr_async.models.Record`, whose
``parsed`` is the recognition already parsed) and import the core and the
pipeline, never :mod:`ocr_async.cli`. For every run:

* :mod:`~ocr_async.outputs.jsonl`: :class:`JsonlSink`, one strict JSON line
  per record, and the :class:`OutputLock` that keeps one run per output;
* :mod:`~ocr_async.outputs.textdir`: ``--text-dir``, one ``.txt`` per image;
* :mod:`~ocr_async.outputs.pagefiles`: ``--alto``, ``--hocr`` and
  ``--searchable-pdf``, files per page as records finish (a
  :class:`~ocr_async.models.PageSink`), with the formats below;
* :mod:`~ocr_async.outputs.mirror`: where a source's file goes below such a
  folder, and writing it there without ever leaving the folder;
* :mod:`~ocr_async.outputs.progress`: the progress bar on stderr.

Each page-format module turns one parsed recognition
(:class:`~ocr_async.models.OcrResult`) and the size of the image it was read
from into one document, with no network and no state, so it can be called
per record as records arrive:

* :mod:`~ocr_async.outputs.layout`: the API's boxes as whole-pixel rectangles
  on the page, shared by every writer below;
* :mod:`~ocr_async.outputs.alto`: ALTO v4 XML (the library standard);
* :mod:`~ocr_async.outputs.hocr`: hOCR 1.2 (XHTML);
* :mod:`~ocr_async.outputs.searchable_pdf`: the image with the words as
  invisible, searchable text, one page at a time.

They need the ``digitize`` extra (``pip install 'ocr-async[digitize]'``).
For runs and services:

* :mod:`~ocr_async.outputs.metrics`: Prometheus metrics (the ``metrics`` extra);
* :mod:`~ocr_async.outputs.jsonlog`: ``--log-format json``, one JSON object
  per log line.
"""
