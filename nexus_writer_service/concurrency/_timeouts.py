"""Validation of the ``timeout`` arguments accepted by every blocking call.

Pure helpers, no thread or hub involved.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Optional

from ..errors import ArgumentTypeError, ConfigurationError


def check_timeout(timeout: Optional[float], name: str = "timeout") -> Optional[float]:
    """Return ``timeout`` as seconds (``None`` means wait forever).

    :raises ArgumentTypeError: not a real number (``bool`` is refused too)
    :raises ConfigurationError: negative or NaN
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, Real):
        raise ArgumentTypeError(
            f"{name} must be a number of seconds or None, not {type(timeout).__name__} "
            f"({timeout!r})"
        )
    seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0:
        raise ConfigurationError(f"{name} must be >= 0 seconds or None, got {timeout!r}")
    if math.isinf(seconds):
        return None
    return seconds
