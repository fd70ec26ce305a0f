"""The house rules that keep mwc_dist readable (docs/ARCHITECTURE.md), checked on the source itself.

No class over 200 lines, no function over 60, Trainer.train() under 60; every build_* takes a section
(or plain values), never the whole Config; no import cycle inside mwc_dist, lazy imports (inside functions)
counted: a lazy import that hides a cycle still ties the two modules into one.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "mwc_dist"


def _definitions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE.parent), node, node.end_lineno - node.lineno + 1


def test_no_long_classes_or_functions():
    too_long = [
        f"{path}:{node.lineno} {node.name} ({lines} lines)"
        for path, node, lines in _definitions()
        if lines > (200 if isinstance(node, ast.ClassDef) else 60)
    ]
    assert too_long == []


def test_the_training_loop_fits_on_a_screen():
    lengths = {(str(path), node.name): lines for path, node, lines in _definitions()}
    assert lengths[("mwc_dist/train.py", "train")] < 60
    assert lengths[("mwc_dist/train.py", "Trainer")] <= 200


def test_builders_take_their_own_section():
    whole = []
    for path, node, _ in _definitions():
        if isinstance(node, ast.FunctionDef) and node.name.startswith("build_"):
            annotations = [ast.unparse(a.annotation) for a in node.args.args if a.annotation is not None]
            whole += [f"{path}:{node.lineno} {node.name}" for a in annotations if a == "Config"]
    assert whole == []


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, at the top or inside a function (``from a import b`` counts as
    importing the module ``a.b`` where that is a module, else ``a``)."""
    root = package.name
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(root):
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    graph[module].add(name if name in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names if a.name.startswith(root)}
    packages = {m for m, p in modules.items() if p.name == "__init__.py"}  # an empty __init__ is no dependency
    return {m: {d for d in deps if d in modules and d != m and d not in packages} for m, deps in graph.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycle_in_mwc_dist():
    assert import_cycles(import_graph(PACKAGE)) == []


def test_the_cycle_check_finds_a_lazy_cycle(tmp_path):
    """Checked by adding one: a module importing another at the top, the other importing it inside a function."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (pkg / "c.py").write_text("import pkg.a\ndef g(): pass\n")
    (pkg / "d.py").write_text("from pkg import a\n")  # imports into the cycle, is not in it
    assert import_cycles(import_graph(pkg)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_the_library_does_not_import_the_demo():
    """mwc_dist/demo/ sits apart: only the CLI (``mwc demo``, ``mwc demo-data``) reaches into it."""
    graph = import_graph(PACKAGE)
    library = {m for m in graph if not m.startswith("mwc_dist.demo") and not m.startswith("mwc_dist.cli")}
    reaching_in = {m: sorted(d for d in graph[m] if d.startswith("mwc_dist.demo")) for m in library}
    assert {m: deps for m, deps in reaching_in.items() if deps} == {}
    assert {d for m in graph if m.startswith("mwc_dist.cli") for d in graph[m] if d.startswith("mwc_dist.demo")} == {
        "mwc_dist.demo.corpus",
        "mwc_dist.demo.pipeline",
    }


def test_evaluation_needs_only_the_decoding_layer():
    """inference/decoding.py (prompt, generate arguments, fallback) is the one layer evaluation and the backends share;
    it reaches into nothing above it."""
    graph = import_graph(PACKAGE)
    assert {d for d in graph["mwc_dist.evaluate"] if d.startswith("mwc_dist.inference")} == {
        "mwc_dist.inference.decoding"
    }
    assert {d for d in graph["mwc_dist.inference.decoding"] if d.startswith("mwc_dist.inference")} == set()
    assert "mwc_dist.inference.decoding" in graph["mwc_dist.inference.backends"]


def test_both_training_streams_compose_the_same_stages():
    """data/stages.py is the one stage list: the endless stream holds one as an epoch's does, inheriting nothing, and
    the run's plan asks either the same questions (no branch on which it has outside choosing it)."""
    from mwc_dist.data.mix import ResampledStream
    from mwc_dist.data.stream import TrainStream

    assert not issubclass(ResampledStream, TrainStream) and not issubclass(TrainStream, ResampledStream)
    for stream in (TrainStream, ResampledStream):
        assert {"steps_per_epoch", "left_out", "describe"} <= set(vars(stream))
    plan = (PACKAGE / "data" / "plan.py").read_text()
    assert plan.count("if self.endless") == 1  # TrainData.stream: which one to make


def test_only_train_state_advances_itself():
    """TrainState (resume/state.py) is changed only by its own methods: no module assigns to one of its fields."""
    from dataclasses import fields

    from mwc_dist.resume.state import TrainState

    names = {f.name for f in fields(TrainState)}

    def is_state(node) -> bool:  # state.<field> or self.state.<field>
        return (isinstance(node, ast.Name) and node.id == "state") or (
            isinstance(node, ast.Attribute) and node.attr == "state"
        )

    writes = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "resume" / "state.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if not isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                continue
            for t in targets:
                t = t.value if isinstance(t, ast.Subscript) else t  # state.data_position[rank] = ...
                for e in t.elts if isinstance(t, ast.Tuple) else [t]:
                    if isinstance(e, ast.Attribute) and e.attr in names and is_state(e.value):
                        writes.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(e)}")
    assert writes == []
