"""Generate the Python code of the gRPC contract (protos/) into entrypoints/grpc/gen.

    python scripts/protos.py            # regenerate entrypoints/grpc/gen (`make protos`)
    python scripts/protos.py --check    # fail if regenerating would change it (`make lint`)

grpcio-tools (pinned in pyproject.toml, so every machine generates the same bytes) writes the
messages (*_pb2.py), their type stubs (*_pb2.pyi) and the gRPC stubs and servicers
(*_pb2_grpc.py). protoc names the imports between our files after the proto package
(``from tolstoy.v1 import common_pb2``); they are rewritten to ``entrypoints.grpc.gen.tolstoy.v1``
so that the generated package imports like any other, without touching sys.path. Generation
always happens in a temporary directory: ``--check`` compares it with the committed code and
never writes to the tree.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import sys
import tempfile
from importlib import metadata, resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "entrypoints.grpc.gen"
TARGET = ROOT / Path(*PACKAGE.split("."))
# ``from tolstoy.v1 import x_pb2 as ...``: the only form protoc and the gRPC plugin write (the tests check).
_OWN_IMPORT = re.compile(r"^(\s*)from (tolstoy(?:\.\w+)*) import ", re.MULTILINE)


def _generator() -> str:
    return f"grpcio-tools {metadata.version('grpcio-tools')}"


def _init_text(generator: str) -> str:
    return f'"""Generated from protos/ by scripts/protos.py with {generator}: do not edit, run `make protos`."""\n'


def generate(out: Path) -> None:
    """Writes the whole generated package (``__init__.py`` files included) into ``out``."""
    sources = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    if not sources:
        sys.exit(f"no .proto files under {PROTOS}")
    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    arguments = [
        "protoc",
        f"--proto_path={PROTOS}", f"--proto_path={well_known}",
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
        *sources,
    ]  # fmt: skip
    if protoc.main(arguments) != 0:
        sys.exit("protoc failed (see above)")
    generator = _generator()
    (out / "__init__.py").write_text(_init_text(generator))
    for path in sorted(out.rglob("*")):
        if path.name.endswith("_pb2_grpc.py") and "\nclass " not in path.read_text():
            path.unlink()  # a file of messages only: its gRPC module would hold nothing but a version check
        elif path.is_dir():
            (path / "__init__.py").write_text(_init_text(generator))
        elif path.suffix in (".py", ".pyi"):
            text = path.read_text()
            path.write_text(_OWN_IMPORT.sub(rf"\1from {PACKAGE}.\2 import ", text))


def _files(root: Path) -> dict[str, str]:
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = _files(Path(tmp))
    committed = _files(TARGET)
    if fresh == committed:
        print(f"{TARGET.relative_to(ROOT)} is up to date with protos/")
        return 0
    for name in sorted(fresh.keys() | committed.keys()):
        old, new = committed.get(name), fresh.get(name)
        if old == new:
            continue
        if old is None or new is None:
            print(f"{'missing' if old is None else 'stale'}: {TARGET.relative_to(ROOT)}/{name}")
            continue
        sys.stdout.writelines(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                f"committed/{name}",
                f"fresh/{name}",
            )
        )
    print(
        f"\n{TARGET.relative_to(ROOT)} does not match protos/: run `make protos` and commit the result "
        f"(generated here with {_generator()}; the committed code says which version made it in its "
        "__init__.py).",
        file=sys.stderr,
    )
    return 1


def write() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(tmp, TARGET)
    print(f"generated {TARGET.relative_to(ROOT)} from protos/ with {_generator()}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare with the committed code; write nothing")
    return check() if parser.parse_args().check else write()


if __name__ == "__main__":
    raise SystemExit(main())
