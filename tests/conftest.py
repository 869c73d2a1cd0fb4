"""Shared test setup: the app trains in-process and saves runs under a temporary folder."""

import os
import sys
import tempfile

import pytest

# Set before any page module reads them: tests train in a thread, never in worker processes,
# and never write into the working tree's runs/ folder.
os.environ.setdefault("FATVIZ_WORKERS", "0")
os.environ.setdefault("FATVIZ_RUNS_DIR", tempfile.mkdtemp(prefix="fatviz-test-runs-"))


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Put back the `__main__` module an AppTest replaces with the page it ran.

    A spawned worker process re-imports `__main__` by its path; left pointing at a page, every
    later test that starts worker processes would run that page in its workers and lose them.
    """
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
