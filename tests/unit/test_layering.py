"""The folders are the architecture: arrows run one way, cli -> flows -> tasks -> core packages -> storage,
stream, errors. The core never imports Prefect, so it runs and tests without a server."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "sppg_backup"
LINKED = ("flows", "tasks", "deployments")  # top-level folders, installed as sppg_backup.flows and so on
EDGES = ("cli", "sandbox")  # they run flows; nothing below them imports them
BOTTOM = ("storage", "stream")  # byte movers: they know nothing of what the bytes are
CAPABILITIES = ("db", "physical", "files", "full", "ops")


def imports(path: Path, top_level_only: bool = False) -> list[str]:
    """Absolute names a module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    own = path.relative_to(ROOT).with_suffix("").parts
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = own[: len(own) - node.level]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [name.replace("sppg_backup.", "", 1) if name.startswith("sppg_backup.") else name for name in found]


def layer_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[0] in LINKED:
        return parts[0]
    inner = path.relative_to(PACKAGE).parts
    return inner[0] if len(inner) > 1 else "foundation"


def sources(*folders: str) -> list[Path]:
    found = []
    for folder in folders:
        found += sorted((ROOT / folder).rglob("*.py"))
    return found


def core_modules() -> list[Path]:
    edge = (*EDGES, *LINKED)
    return [p for p in PACKAGE.rglob("*.py") if layer_of(p) not in edge and p.name != "__main__.py"]  # __main__: cli


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{p.relative_to(ROOT)} imports {name}" for p in paths for name in imports(p) if name.split(".")[0] in forbidden
    ]


def test_the_linked_folders_are_the_top_level_ones() -> None:
    for name in LINKED:
        assert (PACKAGE / name).resolve() == (ROOT / name).resolve()


def test_core_never_imports_prefect_or_a_layer_above_it() -> None:
    paths = core_modules()
    assert paths and not offenders(paths, ("prefect", "prefect_gcp", *LINKED, *EDGES))


def test_storage_and_stream_know_nothing_of_the_capabilities() -> None:
    paths = [p for p in core_modules() if layer_of(p) in BOTTOM]
    assert paths and not offenders(paths, CAPABILITIES)


def test_foundation_modules_stay_below_the_capabilities() -> None:
    paths = [p for p in core_modules() if layer_of(p) == "foundation"]
    assert paths and not offenders(paths, CAPABILITIES)


def test_tasks_never_import_flows_deployments_or_edges() -> None:
    assert not offenders(sources("tasks"), ("flows", "deployments", *EDGES))


def test_flows_never_import_deployments_or_edges() -> None:
    assert not offenders(sources("flows"), ("deployments", *EDGES))


def test_nothing_shipped_imports_the_tests_or_benchmarks() -> None:
    shipped = [p for p in PACKAGE.rglob("*.py")] + sources(*LINKED)
    assert not offenders(shipped, ("tests", "bench"))


def test_no_module_imports_itself_back_through_a_circle() -> None:
    """Module-level imports only: a circle there makes import order matter (the old cli.py, cli_files.py)."""
    modules = {}
    for path in [*core_modules(), *PACKAGE.glob("cli/*.py"), *sources(*LINKED)]:
        name = ".".join(path.relative_to(PACKAGE if path.is_relative_to(PACKAGE) else ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        found = {i for i in imports(path, top_level_only=True) if i in modules} - {name}
        # `from package import module` is an arrow to the module, not to the package
        graph[name] = {i for i in found if not any(o.startswith(i + ".") for o in found)}
    circles, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append(" -> ".join([*trail[trail.index(name) :], name]))
        elif name not in done:
            for following in sorted(graph[name]):
                visit(following, [*trail, name])
            done.add(name)

    for start in sorted(graph):
        visit(start, [])
    assert circles == []
