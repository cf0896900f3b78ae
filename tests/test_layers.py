"""The layers stay honest: every import of every module, read from its source (ast).

The house, from the bottom up (docs: README, "Layout")::

    core        errors models options protocol sanitize auth transport retry
                client limits inputs precheck imaging pdfpages wording
                                                    (one input, start to answer)
    pipeline/   many inputs: sources, batch, resume, manifests ...
    outputs/    where records go: JSONL, text files, progress, formats
    cli/        the command line
    emulator/   the local server, beside the rest: it uses the core only

A module may import its own layer and those below it, never above. Imports
inside functions count too: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ocr_async"

CORE = frozenset(
    {
        "errors",
        "models",
        "options",
        "protocol",
        "sanitize",
        "auth",
        "transport",
        "retry",
        "client",
        "limits",
        # The rate controller's shared form (issue 11): limits over Redis.
        "shared_quota",
        "inputs",
        "precheck",
        "imaging",
        # A PDF as page images for the pre-check's page step (issue 12): one
        # input made sendable, like imaging's TIFF pages; the core may not
        # import pipeline/, and the client reads PDFs through the same stage.
        "pdfpages",
        # Plural-aware wording shared by the run's summary and the report's.
        "wording",
    }
)
#: What each layer may import from the package (besides itself, and the root
#: package's ``__version__``).
MAY_IMPORT = {
    "core": {"core"},
    "pipeline": {"core", "pipeline"},
    "outputs": {"core", "pipeline", "outputs"},
    "cli": {"core", "pipeline", "outputs", "cli", "emulator"},
    "emulator": {"core", "emulator"},
    # ``--plugin ocr_async.ocrmypdf`` runs the pipeline and writes hOCR.
    "ocrmypdf": {"core", "pipeline", "outputs"},
}
#: Modules that must do no I/O at all: no network, no files, no event loop.
NO_IO = frozenset({"protocol", "sanitize", "errors", "models", "retry"})
IO_MODULES = frozenset(
    {
        "aiohttp",
        "aiofiles",
        "asyncio",
        "io",
        "os",
        "pathlib",
        "shutil",
        "socket",
        "ssl",
        "subprocess",
        "tempfile",
    }
)
#: What of ``os`` a pure module may touch: path types, not files.
OS_PATH_TYPES = frozenset({"PathLike", "fspath"})


def layer_of(module: str) -> str:
    """The layer of ``ocr_async.<module>`` (dotted, without the package name)."""
    top = module.split(".")[0]
    if top in CORE:
        return "core"
    if top in ("pipeline", "outputs", "cli", "emulator", "ocrmypdf"):
        return top
    raise AssertionError(f"ocr_async.{module} has no layer: add it to tests/test_layers.py")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts in ((), ("__main__",)):
            continue  # the root re-exports the public names; __main__ runs the CLI
        yield ".".join(parts), path


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports, absolute, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            assert node.module is not None
            yield node.module, node.lineno
            if node.module == "ocr_async":  # from ocr_async import protocol, ...
                for alias in node.names:
                    yield f"ocr_async.{alias.name}", node.lineno


def package_imports(path: Path) -> Iterator[tuple[str, int]]:
    for name, line in imports(path):
        if name.startswith("ocr_async.") and name != "ocr_async.__version__":
            yield name.removeprefix("ocr_async."), line


ALL = list(modules())


@pytest.mark.parametrize(("module", "path"), ALL, ids=[m for m, _ in ALL])
def test_each_module_imports_only_its_layer_and_below(module: str, path: Path) -> None:
    layer = layer_of(module)
    wrong = [
        f"line {line}: ocr_async.{name} ({layer_of(name)})"
        for name, line in package_imports(path)
        if layer_of(name) not in MAY_IMPORT[layer]
    ]
    assert wrong == [], f"ocr_async.{module} ({layer}) imports above its layer: {wrong}"


@pytest.mark.parametrize("module", sorted(NO_IO))
def test_the_pure_modules_import_no_io(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    found = {name.split(".")[0] for name, _ in imports(path)} & IO_MODULES
    if "os" in found:
        # models names path types (os.PathLike, os.fspath); nothing else of os.
        used = {
            node.attr
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        }
        assert used <= OS_PATH_TYPES, f"ocr_async.{module} uses os.{sorted(used - OS_PATH_TYPES)}"
        found.discard("os")
    assert found == set(), f"ocr_async.{module} imports I/O: {sorted(found)}"


def test_every_module_has_a_layer() -> None:
    for module, _ in ALL:
        layer_of(module)


def test_errors_is_a_leaf() -> None:
    assert list(package_imports(PACKAGE / "errors.py")) == []


def test_the_emulator_needs_only_the_core() -> None:
    # What it needs, stated: the wire format and checks (protocol, errors,
    # models), the image headers (imaging), the OAuth paths (auth) and the
    # limiter models' token bucket and controller (limits).
    used = {
        name.split(".")[0]
        for module, path in ALL
        if module.startswith("emulator")
        for name, _ in package_imports(path)
        if not name.startswith("emulator")
    }
    assert used <= {"protocol", "errors", "models", "imaging", "auth", "limits"}, used


def test_the_console_script_and_python_dash_m_point_at_main() -> None:
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert 'ocr-async = "ocr_async.cli:main"' in pyproject
    main = (PACKAGE / "__main__.py").read_text(encoding="utf-8")
    assert "from ocr_async.cli import main" in main
