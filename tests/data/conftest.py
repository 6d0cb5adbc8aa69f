"""Fixtures shared by the data tests."""

import pytest


@pytest.fixture(scope="session")
def installed_data_dir(tmp_path_factory):
    """One TFDS data_dir for the session's installed-package sets: each is built at most once
    (test_installed_data.py and test_carving.py read the same prepared files)."""
    return str(tmp_path_factory.mktemp("tfds_installed"))
