"""Where results go: JSONL, text files, reports, progress, logs and metrics."""
