"""The pipeline: sources -> pre-check (read, check, convert, pages) -> batch."""
