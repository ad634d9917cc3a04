"""The core modules import one another without a cycle, lazy (function-level) imports included:
checks is a leaf; utils may use checks; data and dryrun may use utils; nothing below leads back up."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ccc_lib"
CORE = ("checks", "utils", "data", "dryrun")


def _imports(mod: str) -> set:
    """ccc_lib modules ``mod`` imports anywhere in its source (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse((PKG / f"{mod}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ccc_lib."):
            out.add(node.module.split(".")[1])
    return out


def test_no_import_cycle_among_the_core_modules():
    graph = {m: _imports(m) & set(CORE) for m in CORE}
    assert graph["checks"] == set(), f"checks must stay a leaf, imports {graph['checks']}"
    seen, stack = set(), []

    def visit(m):
        assert m not in stack, f"import cycle: {' -> '.join(stack[stack.index(m):] + [m])}"
        if m in seen:
            return
        stack.append(m)
        for n in graph[m]:
            visit(n)
        stack.pop()
        seen.add(m)

    for m in CORE:
        visit(m)


def test_checks_still_accepts_tensor_data():
    import torch
    from ccc_lib.checks import check_images
    from ccc_lib.data import TensorData
    td = TensorData(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), ["a", "b"], "t", "test")
    assert check_images(td).shape == (2, 1, 4, 4)
