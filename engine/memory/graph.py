"""The repository graph: files and symbols as a networkx graph built from the symbol index.

Owns name resolution (imports, same-file definitions, qualified attribute access, and a
unique-name fallback) and the answers to structural questions: which files depend on a file,
who calls a function, what a file imports. Rebuilt from the index on demand (`refresh`); it
never reads files itself. Node ids: a file is its path, a symbol is "path::qualname".
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable

import msgspec
import networkx as nx

from delegation_machine.engine.memory.occurrence import SymbolOccurrence
from delegation_machine.engine.memory.symbols import SymbolIndex

_CALLABLE_KINDS = frozenset(
    {"function", "method", "class", "struct", "interface", "enum", "trait", "type", "variable"}
)
_JS_SUFFIXES = ("", ".ts", ".tsx", ".js", ".jsx", ".mjs", "/index.ts", "/index.js")


class SymbolRef(msgspec.Struct, frozen=True):
    """A definition in the graph: where it is and what it is."""

    node: str
    path: str
    qualname: str
    name: str
    symbol_kind: str
    line: int


class CallSite(msgspec.Struct, frozen=True):
    """One resolved use of a definition: the using file, the enclosing scope, the token."""

    path: str
    caller: str | None
    occurrence: SymbolOccurrence
    callee: SymbolRef


def _qualname(occurrence: SymbolOccurrence) -> str:
    if occurrence.container:
        return f"{occurrence.container}.{occurrence.name}"
    return occurrence.name


def python_module_name(rel: str) -> str | None:
    """`pkg/mod.py` -> `pkg.mod`; `pkg/__init__.py` -> `pkg`; None for non-Python files."""
    if not rel.endswith((".py", ".pyi")):
        return None
    stem = rel.rsplit(".", 1)[0]
    parts = stem.split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts else None


class RepoGraph:
    """Files and their definitions, linked by imports, references and calls."""

    def __init__(self, index: SymbolIndex) -> None:
        self.index = index
        self.graph: nx.DiGraph = nx.DiGraph()
        self._modules: dict[str, str] = {}
        self._definitions: dict[str, list[SymbolRef]] = defaultdict(list)
        self._by_qualname: dict[tuple[str, str], SymbolRef] = {}
        self._uses: list[CallSite] = []
        self._bindings: dict[str, dict[str, str]] = {}  # per file: local name -> import target
        self._stars: dict[str, list[str]] = {}  # per file: modules it imports `*` from
        self.generation = -1
        self.refresh()

    # --- building ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the graph from the index's current state."""
        self.generation = self.index.generation
        self.graph = nx.DiGraph()
        self._modules = {}
        self._definitions = defaultdict(list)
        self._by_qualname = {}
        self._uses = []
        root_name = self.index.root.name
        files = self.index.files()
        for rel in files:
            self.graph.add_node(rel, kind="file")
            module = python_module_name(rel)
            if module:
                self._modules.setdefault(module, rel)
                self._modules.setdefault(f"{root_name}.{module}", rel)
                if module.startswith("src."):
                    self._modules.setdefault(module.removeprefix("src."), rel)
        for rel in files:
            for occurrence in self.index.file_occurrences(rel):
                if occurrence.kind == "definition" and occurrence.symbol_kind in _CALLABLE_KINDS:
                    self._add_definition(rel, occurrence)
        self._bindings = {}
        self._stars = {}
        for rel in files:
            occurrences = self.index.file_occurrences(rel)
            self._bindings[rel] = self._import_bindings(rel, occurrences)
            self._stars[rel] = [
                o.target for o in occurrences if o.symbol_kind == "module_star" and o.target
            ]
        for rel in files:
            self._link_file(rel)

    def _add_definition(self, rel: str, occurrence: SymbolOccurrence) -> None:
        if occurrence.symbol_kind in ("variable",) and occurrence.container is not None:
            return
        qualname = _qualname(occurrence)
        if (rel, qualname) in self._by_qualname:
            return  # a re-assignment of a module variable: the first one names it
        ref = SymbolRef(
            node=f"{rel}::{qualname}",
            path=rel,
            qualname=qualname,
            name=occurrence.name,
            symbol_kind=occurrence.symbol_kind or "",
            line=occurrence.span.start.line,
        )
        self._definitions[occurrence.name].append(ref)
        self._by_qualname[(rel, qualname)] = ref
        self.graph.add_node(ref.node, kind="symbol", path=rel, qualname=qualname)
        self.graph.add_edge(rel, ref.node, kind="defines", weight=1.0)

    def _link_file(self, rel: str) -> None:
        occurrences = self.index.file_occurrences(rel)
        bindings = self._bindings[rel]
        for target in [*bindings.values(), *self._stars[rel]]:
            module_file = self._module_file(rel, target)
            if module_file is not None and module_file != rel:
                self._add_file_edge(rel, module_file, "imports", 1.0)
        for occurrence in occurrences:
            if occurrence.kind != "reference":
                continue
            callee = self._resolve(rel, occurrence, bindings)
            if callee is None:
                continue
            caller = occurrence.container
            self._uses.append(CallSite(rel, caller, occurrence, callee))
            if callee.path != rel:
                self._add_file_edge(rel, callee.path, "references", 1.0)
            source = f"{rel}::{caller}" if caller and (rel, caller) in self._by_qualname else rel
            if source != callee.node:
                self._add_edge(
                    source, callee.node, "calls" if occurrence.usage == "call" else "uses"
                )

    def _add_file_edge(self, source: str, target: str, kind: str, weight: float) -> None:
        if self.graph.has_edge(source, target):
            data = self.graph[source][target]
            data["weight"] += weight
            data["kinds"].add(kind)
        else:
            self.graph.add_edge(source, target, kind="depends", kinds={kind}, weight=weight)

    def _add_edge(self, source: str, target: str, kind: str) -> None:
        if self.graph.has_edge(source, target):
            self.graph[source][target]["weight"] += 1.0
        else:
            self.graph.add_edge(source, target, kind=kind, weight=1.0)

    # --- resolution ----------------------------------------------------------------------

    def _import_bindings(self, rel: str, occurrences: list[SymbolOccurrence]) -> dict[str, str]:
        """Local name -> imported target (dotted for Python, a path spec for JS/TS)."""
        bindings: dict[str, str] = {}
        for occurrence in occurrences:
            if occurrence.kind != "import" or occurrence.target is None:
                continue
            if occurrence.language == "python":
                if occurrence.symbol_kind == "module_path":
                    continue  # `from a.b import x` binds only x
                if occurrence.symbol_kind == "module":
                    # `import a.b` binds `a`; only the first segment is a local name.
                    if "." not in occurrence.target:
                        bindings.setdefault(occurrence.name, occurrence.target)
                else:
                    bindings[occurrence.name] = occurrence.target
            elif occurrence.language in ("javascript", "typescript", "tsx"):
                bindings[occurrence.name] = f"{occurrence.target}#{occurrence.name}"
        return bindings

    def _module_file(self, rel: str, target: str) -> str | None:
        """The workspace file a dotted module target (or a JS spec) names, if any."""
        if "#" in target or target.startswith(("./", "../")):
            return self._js_file(rel, target.split("#", 1)[0])
        for dotted in self._module_candidates(self._absolute_module(rel, target)):
            while dotted:
                found = self._modules.get(dotted)
                if found is not None:
                    return found
                dotted = dotted.rpartition(".")[0]
        return None

    @staticmethod
    def _module_candidates(dotted: str, keep: int = 2) -> list[str]:
        """The target, then the target without leading package segments (a distribution may
        map `engine/` to `pkg.engine`); `keep` segments stay, so `os.path` never matches a
        top-level `path.py`."""
        parts = dotted.split(".")
        return [".".join(parts[cut:]) for cut in range(0, max(1, len(parts) - keep + 1))]

    def _absolute_module(self, rel: str, target: str) -> str:
        if not target.startswith("."):
            return target
        level = len(target) - len(target.lstrip("."))
        package = (python_module_name(rel) or "").split(".")
        if not rel.endswith("__init__.py"):
            package = package[:-1]
        base = package[: len(package) - (level - 1)] if level > 1 else package
        rest = target.lstrip(".")
        return ".".join([*base, rest] if rest else base)

    def _js_file(self, rel: str, spec: str) -> str | None:
        if not spec.startswith("."):
            return None
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), spec))
        stem = joined.rsplit(".", 1)[0] if joined.endswith((".js", ".mjs", ".jsx")) else joined
        for candidate in (joined, *(stem + suffix for suffix in _JS_SUFFIXES)):
            if self.graph.has_node(candidate) and self.graph.nodes[candidate].get("kind") == "file":
                return candidate
        return None

    def _symbol_in_module(self, rel: str, target: str, hops: int = 0) -> SymbolRef | None:
        """`pkg.mod.name` (or `pkg.mod.Class.method`) -> that definition, if in the workspace.

        A name the module only re-exports (`from .impl import name`, `from .impl import *`
        in a package's `__init__`) is followed to where it is defined, up to 4 hops.
        """
        if "#" in target:
            spec, name = target.split("#", 1)
            module_file = self._js_file(rel, spec)
            return self._by_qualname.get((module_file, name)) if module_file else None
        for dotted in self._module_candidates(self._absolute_module(rel, target), keep=3):
            parts = dotted.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                module_file = self._modules.get(".".join(parts[:cut]))
                if module_file is not None:
                    qualname = ".".join(parts[cut:])
                    found = self._by_qualname.get((module_file, qualname))
                    if found is None and hops < 4:
                        found = self._reexported(module_file, qualname, hops + 1)
                    return found
        return None

    def _reexported(self, module_file: str, qualname: str, hops: int) -> SymbolRef | None:
        head, _, rest = qualname.partition(".")
        bound = self._bindings.get(module_file, {}).get(head)
        if bound is not None:
            return self._symbol_in_module(module_file, bound + (f".{rest}" if rest else ""), hops)
        for star in self._stars.get(module_file, ()):
            found = self._symbol_in_module(module_file, f"{star}.{qualname}", hops)
            if found is not None:
                return found
        return None

    def _resolve(
        self, rel: str, occurrence: SymbolOccurrence, bindings: dict[str, str]
    ) -> SymbolRef | None:
        name = occurrence.name
        if occurrence.usage in ("attribute", "call", "decorator") and occurrence.qualifier:
            head, _, rest = occurrence.qualifier.partition(".")
            if head in bindings:
                target = bindings[head] + (f".{rest}" if rest else "") + f".{name}"
                found = self._symbol_in_module(rel, target)
                if found is not None:
                    return found
            if head in ("self", "cls", "this") and occurrence.container:
                owner = occurrence.container.rpartition(".")[0]
                found = self._by_qualname.get((rel, f"{owner}.{name}"))
                if found is not None:
                    return found
            # An unknown object: only a method can answer `obj.name(...)`, never a module
            # function of that name (`", ".join(...)` is not `defaultfilters.join`).
            return self._unique(name, kinds=("method",))
        if name in bindings:
            return self._symbol_in_module(rel, bindings[name])
        local = self._by_qualname.get((rel, name))
        if local is not None:
            return local
        if occurrence.language == "go":
            directory = posixpath.dirname(rel)
            same_package = [
                d for d in self._definitions.get(name, ()) if posixpath.dirname(d.path) == directory
            ]
            if len(same_package) == 1:
                return same_package[0]
        if occurrence.usage in ("call", "decorator", "type"):
            return self._unique(name, kinds=("function", "class", "struct", "type", "interface"))
        return None

    def _unique(self, name: str, kinds: Iterable[str]) -> SymbolRef | None:
        wanted = set(kinds)
        candidates = [d for d in self._definitions.get(name, ()) if d.symbol_kind in wanted]
        return candidates[0] if len(candidates) == 1 else None

    # --- questions (each rebuilds first if the index changed since) --------------------

    def fresh(self) -> RepoGraph:
        """This graph, rebuilt if the index changed since it was built."""
        if self.generation != self.index.generation:
            self.refresh()
        return self

    def definitions(self, name: str) -> list[SymbolRef]:
        self.fresh()
        return list(self._definitions.get(name, ()))

    def symbol(self, path: str, qualname: str) -> SymbolRef | None:
        """The definition `qualname` in `path` (e.g. "Cart.checkout"), if indexed."""
        self.fresh()
        return self._by_qualname.get((path, qualname))

    def uses(self) -> list[CallSite]:
        """Every resolved use in the workspace."""
        self.fresh()
        return list(self._uses)

    def dependents(self, path: str) -> list[str]:
        """Files that import or use something defined in `path`, sorted."""
        self.fresh()
        if not self.graph.has_node(path):
            return []
        return sorted(
            source
            for source in self.graph.predecessors(path)
            if self.graph.nodes[source].get("kind") == "file"
        )

    def dependencies(self, path: str) -> list[str]:
        """Files that `path` imports or uses, sorted."""
        self.fresh()
        if not self.graph.has_node(path):
            return []
        return sorted(
            target
            for target in self.graph.successors(path)
            if self.graph.nodes[target].get("kind") == "file"
        )

    def transitive_dependents(self, path: str) -> list[str]:
        """Every file that depends on `path` directly or through other files."""
        files = self.file_graph()
        if not files.has_node(path):
            return []
        return sorted(nx.ancestors(files, path))

    def uses_of(self, name: str, *, calls_only: bool = False) -> list[CallSite]:
        """Resolved uses of any definition called `name`, ordered by path and offset."""
        self.fresh()
        found = [
            use
            for use in self._uses
            if use.callee.name == name and (not calls_only or use.occurrence.usage == "call")
        ]
        return sorted(found, key=lambda use: (use.path, use.occurrence.start))

    def callers(self, name: str) -> list[CallSite]:
        """Who calls `name`: every resolved call site."""
        return self.uses_of(name, calls_only=True)

    def file_graph(self) -> nx.DiGraph:
        """Files only; an edge A -> B (weight = uses) when A depends on B."""
        self.fresh()
        files = nx.DiGraph()
        for node, data in self.graph.nodes(data=True):
            if data.get("kind") == "file":
                files.add_node(node)
        for source, target, data in self.graph.edges(data=True):
            if data.get("kind") == "depends":
                files.add_edge(source, target, weight=data["weight"])
        return files

    def references_between(self) -> dict[tuple[str, str], int]:
        """(using file, defining file) -> number of resolved uses across files."""
        self.fresh()
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for use in self._uses:
            if use.path != use.callee.path:
                counts[(use.path, use.callee.path)] += 1
        return dict(counts)

    def use_counts(self) -> dict[str, int]:
        """Symbol node -> number of resolved uses from other files."""
        self.fresh()
        counts: dict[str, int] = defaultdict(int)
        for use in self._uses:
            if use.path != use.callee.path:
                counts[use.callee.node] += 1
        return dict(counts)
