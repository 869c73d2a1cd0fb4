"""Shared test setup: the app trains in-process and saves runs under a temporary folder."""

import os
import tempfile

# Set before any page module reads them: tests train in a thread, never in worker processes,
# and never write into the working tree's runs/ folder.
os.environ.setdefault("FATVIZ_WORKERS", "0")
os.environ.setdefault("FATVIZ_RUNS_DIR", tempfile.mkdtemp(prefix="fatviz-test-runs-"))
