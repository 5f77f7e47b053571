"""Regular expressions for user-supplied patterns: RE2, which matches in linear time.

Python's ``re`` backtracks: a pattern like ``^(a+)+$`` takes exponential time on a short input,
so user patterns never reach it. RE2 refuses the features that need backtracking
(backreferences, lookaround) at compile time; the domain reports that as an invalid pattern.
"""

from __future__ import annotations

import re2

from domain.input_schema import Pattern

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are raised to the caller, not printed to stderr
_OPTIONS.max_mem = 8 << 20  # bound the compiled program's memory too


def compile_pattern(pattern: str) -> Pattern:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
