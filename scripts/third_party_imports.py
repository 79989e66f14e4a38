"""The third-party modules that the project's code imports, read with `ast` (no code is run).

Every absolute import counts, also those inside functions (leadflow defers heavy imports to
keep DAG parsing fast, so importing the modules alone does not reach them). Standard-library
modules and the project's own (what the scanned folders make importable) are left out.

Used by scripts/check_production_lock.sh (which imports each module in a venv holding only the
production lock) and by tests/unit/test_dependencies.py. Standard library only: it runs in any
venv.

    python scripts/third_party_imports.py include dags plugins   # one dotted module a line
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path


def imports(roots: Iterable[Path]) -> dict[str, set[str]]:
    """{dotted module of every absolute import: files importing it, relative to the root's parent}."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    found.setdefault(module, set()).add(str(path.relative_to(root.parent)))
    return found


def first_party(roots: Iterable[Path], every_folder: bool = False) -> set[str]:
    """Names the project's own folders make importable: the modules and packages directly in
    each root (include/ is the package root; Airflow puts dags/ and plugins/ on sys.path) or,
    with `every_folder`, the modules in any folder below it (pytest puts each test's folder on
    sys.path)."""
    names = {"leadflow"}
    for root in roots:
        for path in root.rglob("*") if every_folder else root.iterdir():
            if path.suffix == ".py" or (path.is_dir() and not every_folder):
                names.add(path.stem)
    return names


def third_party(roots: Iterable[Path], own: set[str] | None = None) -> dict[str, set[str]]:
    """`imports` less the standard library and the project's own modules (`own`, by default
    `first_party(roots)`)."""
    roots = list(roots)
    own = first_party(roots) if own is None else own
    return {module: files for module, files in imports(roots).items()
            if module.split(".")[0] not in sys.stdlib_module_names and module.split(".")[0] not in own}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: third_party_imports.py FOLDER...  (e.g. include dags plugins)", file=sys.stderr)
        return 2
    missing = [folder for folder in argv if not Path(folder).is_dir()]
    if missing:
        print(f"third_party_imports.py: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    for module in sorted(third_party(Path(folder) for folder in argv)):
        print(module)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
