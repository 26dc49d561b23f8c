"""
Every fenced code block of the docs runs, through the check its fence names, so the docs cannot rot.

A block without ``check=NAME`` in its info string, or naming an unknown check, fails here.
"""

from __future__ import annotations

import pytest

from tests.docs.blocks import all_blocks
from tests.docs.checks import CHECKS, DocEnv

BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_code_block(block, request):
    assert block.check, (
        f"{block.where}: this {block.lang or 'untyped'} block names no check; add one to its fence, "
        f"e.g. ```{block.lang or 'bash'} check=NAME, with NAME one of: {', '.join(sorted(CHECKS))}"
    )
    check = CHECKS.get(block.check)
    assert check is not None, f"{block.where}: unknown check {block.check!r}; known: {', '.join(sorted(CHECKS))}"
    assert block.lang in check.langs, f"{block.where}: check {check.name} runs {check.langs} blocks, not {block.lang!r}"
    check.run(block, DocEnv(request))


def test_every_check_is_used_by_a_block():
    used = {block.check for block in BLOCKS}
    assert set(CHECKS) <= used, f"checks no block uses: {sorted(set(CHECKS) - used)}"
