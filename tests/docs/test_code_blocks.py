"""
Every fenced code block of the docs runs, through the check its fence names, so the docs cannot rot.

A block without ``check=NAME`` in its info string, or naming an unknown check, fails here.
"""

from __future__ import annotations

import pytest

from tests.docs.blocks import all_blocks
from tests.docs.checks import CHECKS, DocEnv, run_block

BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_code_block(block, request):
    run_block(block, DocEnv(request))


def test_every_check_is_used_by_a_block():
    used = {block.check for block in BLOCKS}
    assert set(CHECKS) <= used, f"checks no block uses: {sorted(set(CHECKS) - used)}"
