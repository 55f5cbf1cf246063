import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import the `tiny` helpers


@pytest.fixture(scope="session")
def smollm2_dir():
    """The real SmolLM2-135M-Instruct as a safetensors directory (converted once, cached)."""
    from edgecore.loading import builtin_hf_dir

    return builtin_hf_dir()
