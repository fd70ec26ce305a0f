"""The house rules that keep mwc_dist readable (docs/ARCHITECTURE.md), checked on the source itself.

No class over 200 lines, no function over 60, Trainer.train() under 60; every build_* takes a section
(or plain values), never the whole Config.
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
