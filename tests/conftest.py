import pytest
import torch

from mscbench.data.prepare import prepare_synthetic

# Two cores are shared by the test process and anything else running: one intra-op thread is fastest.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A small synthetic dataset, prepared once for the whole session (shared by read-only tests)."""
    directory = tmp_path_factory.mktemp("data")
    prepare_synthetic(directory, rows=30_000, seed=0)
    return directory
