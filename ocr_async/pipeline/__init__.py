"""The stages between a source and its request: read, check, convert, split into pages.

* :mod:`~ocr_async.pipeline.pdf_pages`: a PDF as a stream of page images,
  rendered one at a time (the ``pdf`` extra).
"""
