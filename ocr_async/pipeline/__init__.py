"""The stages between a source and its request: read, check, convert, split into pages.

* :mod:`~ocr_async.pipeline.pdf_pages`: a PDF as a stream of page images,
  rendered one at a time (the ``pdf`` extra);
* :mod:`~ocr_async.pipeline.manifest`: inputs from a manifest (JSONL or CSV),
  each with the caller's id and metadata;
* :mod:`~ocr_async.pipeline.contenthash`: the sha256 of the bytes sent;
* :mod:`~ocr_async.pipeline.verify`: whether an output holds exactly one
  record for every expected input.
"""
