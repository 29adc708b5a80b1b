"""A synthetic Python workspace shared by the inference benchmarks (not itself a benchmark).

Each module has a class and a few functions whose bodies are unique, and imports the previous
module, so the symbol index, the repo graph and the repo map have real structure to work on.
"""

from __future__ import annotations

from pathlib import Path

DECISION_RECORDS = tuple(
    f"ADR-{n:03d}: {title}\nContext: the team needed a rule for {title.lower()}.\n"
    f"Decision: {rule}\nConsequences: reviews check it; exceptions are written down.\n"
    for n, (title, rule) in enumerate(
        [
            (
                "Error handling",
                "raise typed errors that name the input; never return None for failure",
            ),
            ("Logging", "use the module logger; never log secrets or whole payloads"),
            ("Configuration", "read settings once at start-up into a frozen struct"),
            ("Testing", "each public function has a unit test; no sleeps in tests"),
            ("Formatting", "ruff format with line length 100"),
        ],
        start=1,
    )
)


def module_source(number: int, functions: int) -> str:
    lines = [f'"""Module {number}: helpers for area {number}."""', ""]
    if number > 0:
        lines += [f"from mod{number - 1:02d} import f{number - 1}_0", ""]
    for k in range(functions):
        lines += [
            "",
            f"def f{number}_{k}(x: int, scale: float = 1.0) -> float:",
            f'    """Scale x for case {k} of area {number}."""',
            f"    return (x + {number * 100 + k}) * scale",
        ]
    lines += [
        "",
        "",
        f"class Area{number}:",
        f'    """State of area {number}."""',
        "",
        "    def __init__(self) -> None:",
        "        self.total = 0.0",
        "",
        "    def add(self, x: int) -> float:",
        f"        self.total += f{number}_0(x)",
        "        return self.total",
        "",
    ]
    return "\n".join(lines)


def write_workspace(root: Path, modules: int = 48, functions: int = 6) -> dict[str, str]:
    texts = {}
    for number in range(modules):
        path = f"mod{number:02d}.py"
        texts[path] = module_source(number, functions)
        (root / path).write_text(texts[path], encoding="utf-8")
    return texts
