"""``python -m ocr_async``: the same as the ``ocr-async`` command."""

import sys

from ocr_async.cli import main

sys.exit(main())
