"""The test suite (layout: tests/support/__init__.py)."""

import pytest

# The shared helpers assert; have pytest explain their failures as it does a test's own.
pytest.register_assert_rewrite("tests.support")
