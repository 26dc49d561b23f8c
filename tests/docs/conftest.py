"""The docs checks assert like tests: let pytest explain their failures."""

import pytest

pytest.register_assert_rewrite("tests.docs.checks", "tests.docs.ddl_rules")
