"""Which language step code is written in: scored hints, JavaScript by default."""

from __future__ import annotations

import pytest

from domain.code_language import detect_language, language_scores, resolve_language


@pytest.mark.parametrize(
    ("code", "language"),
    [
        # JavaScript
        ("return input.name.toUpperCase()", "javascript"),
        ("const x = 1; return x", "javascript"),
        ("const users = context.variables.users; return users.length", "javascript"),
        ("let total = 0\nfor (const x of input.variables.xs) total += x\nreturn total", "javascript"),
        ("return variables.items.map(i => i * 2)", "javascript"),
        ("function double(x) { return x * 2 }\nreturn double(variables.n)", "javascript"),
        ("console.log('hello'); return 1", "javascript"),
        ("variables.n > 2 && stepOutputs.prev.ok", "javascript"),
        # Python
        ("def process(data):\n    print(data)\n    return {'ok': True}", "python"),
        ("import json\nresult = json.dumps({})", "python"),
        ("from datetime import datetime\nnow = datetime.now()", "python"),
        ("print('hello')", "python"),
        ("if x > 1:\n    y = 2\nelif x < 0:\n    y = None", "python"),
        ("values = [v for v in data if v is not None]\nprint(values)", "python"),
        # Go
        ("package main\nfunc main() { fmt.Println(1) }", "go"),
        ('package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Printf("%d", 2)\n}', "go"),
        ("result := map[string]int{}\nif err != nil { return nil }", "go"),
        # Rust
        ('fn main() { let mut x = 1; println!("{}", x); }', "rust"),
        ("let mut total = 0;\ntotal += 1;", "rust"),
        ("use std::collections::HashMap;\nlet m: HashMap<String, i32> = HashMap::new();", "rust"),
        # Nothing telling
        ("", "javascript"),
        ("x = 1", "javascript"),
    ],
)
def test_detect_language(code: str, language: str) -> None:
    assert detect_language(code) == language


def test_let_mut_is_rust_not_javascript() -> None:
    assert detect_language("let mut x = 5;") == "rust"
    assert detect_language("let x = 5;") == "javascript"


def test_strings_and_comments_do_not_count() -> None:
    # print( inside a JavaScript string, or the Python keywords in a URL or a comment.
    assert detect_language('console.log("print(x)"); return 1') == "javascript"
    assert detect_language("const url = 'https://x.io/def import fn main() {'; return url") == "javascript"
    assert detect_language("// def f(): import os\nreturn variables.n") == "javascript"
    assert detect_language("const msg = `package main\nfunc x()`;\nreturn msg") == "javascript"
    assert language_scores('const s = "println!(1) let mut fn x("; return s')["rust"] == 0


def test_javascript_wins_ties() -> None:
    code = "function print(x) { return x }\nprint(1)"  # print( is a Python hint too
    assert detect_language(code) == "javascript"


def test_resolve_language_prefers_the_declared_one() -> None:
    assert resolve_language("python", "const x = 1; return x") == "python"
    assert resolve_language(" Go ", "return 1") == "go"
    assert resolve_language("js", "print(1)") == "javascript"
    assert resolve_language("py", "") == "python"
    assert resolve_language("typescript", "return 1") == "typescript"  # for the sandbox to refuse or run
    assert resolve_language(None, "def f():\n    return 1") == "python"
    assert resolve_language("", "fn main() {}") == "rust"
    assert resolve_language("   ", "return 1") == "javascript"
