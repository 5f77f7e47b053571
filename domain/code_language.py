"""Which language a piece of step code is written in, when the step does not say.

Scored hints, as the seed describes them: JavaScript (``function``, ``const``, ``=>``,
``console.log``), Python (``def``, ``import``, ``print(``), Go (``func``, ``package``,
``fmt.Print``), Rust (``fn``, ``let mut``, ``println!``). Ties and no hints: JavaScript.
"""

from __future__ import annotations

import re

LANGUAGES = ("javascript", "python", "go", "rust")

_HINTS: dict[str, tuple[tuple[str, int], ...]] = {
    "rust": ((r"\blet\s+mut\b", 4), (r"\bprintln!\s*\(", 4), (r"\bfn\s+\w+\s*\(", 3), (r"->\s*[A-Z&\w:<>]+\s*\{", 1), (r"\buse\s+std::", 4)),
    "go": ((r"^\s*package\s+\w+", 5), (r"\bfunc\s+\w*\s*\(", 3), (r"\bfmt\.Print", 4), (r":=", 1), (r"\binterface\{\}", 3)),
    "python": ((r"^\s*def\s+\w+\s*\(.*\)\s*(->.*)?:\s*$", 4), (r"^\s*(import|from)\s+[\w.]+", 2), (r"\bprint\(", 1), (r"\bTrue\b|\bFalse\b|\bNone\b", 1), (r"^\s*(elif|except)\b", 3), (r"\bf\"", 1)),
    "javascript": ((r"\bfunction\b", 2), (r"\b(const|let|var)\s+[A-Za-z_$]", 2), (r"=>", 2), (r"\bconsole\.log\b", 3), (r"===|!==", 2), (r"\breturn\b[^\n]*;", 1), (r"\bcontext\.", 1)),
}  # fmt: skip
_COMPILED = {lang: tuple((re.compile(p, re.M), w) for p, w in hints) for lang, hints in _HINTS.items()}


def detect_language(code: str) -> str:
    scores = {
        lang: sum(w for pattern, w in hints if pattern.search(code)) for lang, hints in _COMPILED.items()
    }
    best = max(scores.values())
    if best == 0 or scores["javascript"] == best:
        return "javascript"
    return max(scores, key=lambda lang: scores[lang])


def resolve_language(declared: str | None, code: str) -> str:
    """The step's own ``language`` wins; otherwise the code's hints decide."""
    return declared if declared in LANGUAGES else detect_language(code)
