"""JSON with exact decimals, for the sandbox's answers and its control API."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

_DECIMAL_MARK = re.compile(r'"__decimal__([-+0-9.eE]+)__"')


def dump_json(body: Any) -> bytes:
    """JSON with every Decimal written as a bare number, digit for digit."""

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"__decimal__{value}__"
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return _DECIMAL_MARK.sub(r"\1", json.dumps(body, default=default)).encode()
