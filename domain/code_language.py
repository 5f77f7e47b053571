"""Which language a piece of step code is written in, when the step does not say.

Scored hints: JavaScript (``function``, ``const``, ``let``, ``=>``, ``console.log``, ``return``),
Python (``def``, ``import``, ``print(``), Go (``func``, ``package``, ``fmt.Print``) and Rust
(``fn``, ``let mut``, ``println!``), plus a few more telling constructs of each. The contents of
string literals and comments are blanked out first, so ``console.log("print(x)")`` or a URL in a
string does not count. Each hint counts once, with a weight for how telling it is; the highest
score wins and JavaScript wins ties and code without any hint.
"""

from __future__ import annotations

import re

LANGUAGES = ("javascript", "python", "go", "rust")
DEFAULT = "javascript"

_ALIASES = {
    "js": "javascript",
    "node": "javascript",
    "nodejs": "javascript",
    "ecmascript": "javascript",
    "py": "python",
    "python3": "python",
    "golang": "go",
    "rs": "rust",
    "ts": "typescript",
}

# String literals (single, double, backtick; Python's triple quotes come out as "" + "..." + "")
# and comments, in one left-to-right pass so a "//" inside a string is not taken for a comment.
_STRINGS_AND_COMMENTS = re.compile(
    r"""(?P<q>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)"""
    r"""|(?P<c>//[^\n]*|/\*.*?\*/)""",
    re.S,
)

_HINTS: dict[str, tuple[tuple[str, int], ...]] = {
    "javascript": (
        (r"\bfunction\b", 2),
        (r"\bconst\s+[A-Za-z_$][\w$]*\s*=", 2),
        (r"\blet\s+(?!mut\b)[A-Za-z_$\[{]", 2),
        (r"\bvar\s+[A-Za-z_$][\w$]*\s*[=;]", 1),
        (r"=>", 2),
        (r"\bconsole\.(log|warn|error|info)\s*\(", 3),
        (r"\breturn\b", 1),
        (r"===|!==", 2),
        (r"\b(undefined|null)\b", 1),
        (r"\btypeof\b|\binstanceof\b", 2),
        (r"\bJSON\.(parse|stringify)\s*\(", 2),
        (r"\b(context|input)\.(variables|stepOutputs|meta|utils)\b", 1),
        (r"\.(map|filter|reduce|forEach|push)\s*\(", 1),
        (r"\bnew\s+[A-Z]\w*\s*\(", 1),
    ),
    "python": (
        (r"^\s*def\s+\w+\s*\(", 4),
        (r"^\s*import\s+[A-Za-z_][\w.]*(\s+as\s+\w+)?\s*(,\s*[A-Za-z_][\w.]*\s*)*$", 3),
        (r"^\s*from\s+[A-Za-z_.][\w.]*\s+import\b", 4),
        (r"\bprint\s*\(", 2),
        (r"^\s*(if|elif|else|for|while|try|except|finally|with|class|def)\b[^\n{;]*:\s*$", 2),
        (r"^\s*(elif|except)\b", 3),
        (r"\b(None|True|False)\b", 1),
        (r"\b(not|and|or)\s+[\w(]", 1),
        (r"\bself\.\w", 1),
        (r"\blambda\b[^:\n]*:", 2),
        (r"\b[fr]['\"]", 1),
    ),
    "go": (
        (r"^\s*package\s+\w+\s*$", 5),
        (r"\bfunc\s+(\(\s*\w+\s+\*?\w+\s*\)\s*)?\w*\s*\(", 4),
        (r"\bfmt\.\w+\s*\(", 4),
        (r"^\s*import\s*(\(|\")", 3),
        (r":=", 2),
        (r"\bmap\[\w+\]", 2),
        (r"\berr\s*!=\s*nil\b", 3),
        (r"\bnil\b", 1),
        (r"\b(chan|defer|go\s+func)\b", 2),
        (r"\binterface\s*\{\s*\}", 3),
    ),
    "rust": (
        (r"\bfn\s+\w+\s*(<[^>]*>)?\s*\(", 4),
        (r"\blet\s+mut\b", 5),
        (r"\b(println|print|format|vec|panic|eprintln|assert_eq|assert)!\s*[\(\[]", 4),
        (r"^\s*use\s+\w+(::\w+)+", 4),
        (r"\bimpl\b|\bpub\s+(fn|struct|enum)\b", 3),
        (r"\.unwrap\(\)|\.expect\(", 3),
        (r"\b(Some|Ok|Err)\s*\(", 2),
        (r"&mut\b|&str\b|\bString::from\b", 3),
        (r"\bmatch\s+[^\n{]+\{", 1),
        (r"->\s*[A-Za-z&(]", 1),
    ),
}
_COMPILED = {
    language: tuple((re.compile(pattern, re.M), weight) for pattern, weight in hints)
    for language, hints in _HINTS.items()
}


def _blank_strings_and_comments(code: str) -> str:
    def blank(match: re.Match[str]) -> str:
        quoted = match.group("q")
        if quoted is not None:
            return quoted[0] * 2  # keep the quotes, drop what is inside
        return " "

    return _STRINGS_AND_COMMENTS.sub(blank, code)


def language_scores(code: str) -> dict[str, int]:
    """How strongly the code looks like each language (each hint counts once)."""
    text = _blank_strings_and_comments(code)
    return {
        language: sum(weight for pattern, weight in hints if pattern.search(text))
        for language, hints in _COMPILED.items()
    }


def detect_language(code: str) -> str:
    """``"javascript"``, ``"python"``, ``"go"`` or ``"rust"``: the best-scoring one, JavaScript on a tie."""
    scores = language_scores(code)
    best = max(scores.values())
    if best == 0 or scores[DEFAULT] == best:
        return DEFAULT
    return next(language for language in LANGUAGES if scores[language] == best)


def resolve_language(declared: str | None, code: str) -> str:
    """The step's own ``language`` wins when it gives one (lower-cased; ``js``, ``py``, ``golang``,
    ``rs``... understood); otherwise the code's hints decide. A declared language no sandbox knows
    is returned as declared, for the sandbox to refuse by name."""
    if declared is not None and declared.strip():
        return canonical(declared)
    return detect_language(code)


def canonical(name: str) -> str:
    """A declared language's name as the sandboxes know it: ``"JS"`` -> ``"javascript"``."""
    name = name.strip().lower()
    return _ALIASES.get(name, name)
