"""The library's shape: no import cycle among fatviz modules (function-level imports count too),
and no Streamlit import anywhere in fatviz/."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fatviz"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = owner(name) if name.startswith("fatviz") else None
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def test_no_import_cycle_in_fatviz():
    graph = _graph()
    assert len(graph) > 30  # the walk found the package
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_the_library_never_imports_streamlit():
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def _modules_after(code: str) -> set[str]:
    """The top-level module names a fresh interpreter holds after running `code`."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_settings_and_the_help_of_every_command_import_no_torch():
    # torch takes over a second to import: the settings, their choices and `--help` do without it.
    assert "torch" not in _modules_after("import fatviz.settings, fatviz.catalogue")
    from fatviz.cli import COMMANDS

    for command in ("", *COMMANDS):
        loaded = _modules_after(
            "import contextlib, io\nfrom fatviz.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({[command, '--help'] if command else ['--help']!r})\n"
            "    except SystemExit:\n        pass")
        if command != "bench-loss":  # its choices are the torch loss functions it times
            assert "torch" not in loaded, command
        assert "sklearn" not in loaded, command


def test_every_command_is_named_in_the_top_level_help(capsys):
    import pytest

    from fatviz.cli import COMMANDS, main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "compare-losses" in out


def test_every_catalogue_entry_names_torch_code_that_exists():
    from fatviz.catalogue import BATCH_SAMPLERS, LOSSES, MODELS
    from fatviz.settings import RunSettings

    settings = RunSettings()
    for _, spec in LOSSES.items():
        assert callable(spec.build(settings))
    for name, spec in MODELS.items():
        shape = (8,) if spec.takes == "vector" else (1, 28, 28)
        assert hasattr(spec.build(shape, 4), "forward"), name
    import numpy as np

    for name, spec in BATCH_SAMPLERS.items():
        sampler = spec.build(np.repeat(np.arange(4), 4), 8, 2)
        assert sampler.batch_length(8) >= 2, name


# The layers, bottom up. A module may import its own layer and those below it, never one above:
# the FAT library (losses, centres, metrics) and the torch-free declarations (catalogue, job kinds)
# know no data, settings, training or server; the data layer no training or server; training no
# server. Names are module prefixes.
CORE = ("fatviz.errors", "fatviz.registry", "fatviz.catalogue", "fatviz.job_kinds", "fatviz.losses",
        "fatviz.centroids", "fatviz.metrics", "fatviz.projection")
DATA = ("fatviz.data", "fatviz.noise")
TRAINING = ("fatviz.settings", "fatviz.train", "fatviz.evaluation", "fatviz.training_centres", "fatviz.parallel",
            "fatviz.distributed", "fatviz.stepper", "fatviz.compare_losses", "fatviz.distill", "fatviz.retrieval",
            "fatviz.runs", "fatviz.models", "fatviz.sampling", "fatviz.bound_view")
SERVING = ("fatviz.serve",)


def _in(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in layer)


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_each_layer_imports_nothing_above_it():
    graph = _graph()
    above = {"core": DATA + TRAINING + SERVING, "data": TRAINING + SERVING, "training": SERVING}
    layers = {"core": CORE, "data": DATA, "training": TRAINING}
    assert all(any(_in(m, layer) for m in graph) for layer in (*layers.values(), SERVING))  # names still exist
    wrong = []
    for name, layer in layers.items():
        for module in (m for m in graph if _in(m, layer)):
            wrong += [f"{module} ({name}) -> {t}" for t in sorted(_reaches(graph, module)) if _in(t, above[name])]
    assert not wrong, "imports across layers:\n" + "\n".join(wrong)


def test_nothing_in_the_library_imports_the_pages():
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("pages", "app") for n in names), path
