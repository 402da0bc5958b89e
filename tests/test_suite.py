"""The suite's own scheduling (pyproject.toml's addopts, tests/conftest.py), checked where it runs."""

from __future__ import annotations

import pytest

from conftest import SHARED_PROJECTS


def test_tests_that_copy_one_sessions_project_share_one_worker(request):
    """Under `--dist loadgroup`, xdist sends tests with one group suffix (`…@studied_project`) to
    one worker, which then builds that session's project once. If the suffix is missing (a pytest
    that ignores how xdist sets it, say), every worker that gets such a test builds the project."""
    if not getattr(request.config.option, "loadgroup", False):  # Set in xdist workers only.
        pytest.skip("not run by an xdist worker with --dist loadgroup (e.g. `-n 0`)")
    sharing = [(item.nodeid, fixture) for item in request.session.items for fixture in SHARED_PROJECTS
               if fixture in item.fixturenames]
    if not sharing:
        pytest.skip("no test of this run copies a session's project")
    assert [nodeid for nodeid, fixture in sharing if not nodeid.endswith(f"@{fixture}")] == []
