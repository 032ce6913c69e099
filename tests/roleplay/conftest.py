import pytest
from roleplay_fixtures import write_small_dataset


@pytest.fixture
def small_dataset(tmp_path):
    return write_small_dataset(tmp_path)
