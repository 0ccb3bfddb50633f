"""Every ``torch.load`` of the packages reads with ``weights_only=True``: a checkpoint or cache
file from elsewhere must not run code when an experiment resumes from it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("operators", "recon", "experiments", "benchmarks")
#: Files allowed a full unpickling, with the reason.
EXEMPT = {
    # the results each rank of run_distributed has just written into its own temporary folder;
    # they are whatever the user's function returned, not necessarily tensors
    "recon/training/distributed.py",
}


def _torch_load_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "load" and isinstance(node.func.value, ast.Name) \
                and node.func.value.id == "torch":
            yield node


def test_every_torch_load_reads_weights_only():
    offenders, seen = [], 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for call in _torch_load_calls(ast.parse(path.read_text(), filename=rel)):
                seen += 1
                flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
                safe = isinstance(flag, ast.Constant) and flag.value is True
                if not safe and rel not in EXEMPT:
                    offenders.append(f"{rel}:{call.lineno}")
    assert seen >= 5, "the scan found too few torch.load calls: the walk is broken"
    assert not offenders, "torch.load without weights_only=True: " + ", ".join(offenders)
