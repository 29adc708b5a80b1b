"""RenameAgent (kind "rename"): renames one Python symbol across the workspace.

Owns deciding which identifier tokens are the symbol (definitions, imports naming it, and
references reaching it directly or as `module.name`) from the tree-sitter index, never by
text search, so strings and comments stay as they are. Invariants: it refuses (AgentFailure)
rather than change meaning, returns one Mutation per affected file and writes nothing.
"""

from __future__ import annotations

import asyncio
import keyword
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from delegation_machine.engine.agents.base import (
    AgentFailure,
    AgentResult,
    AgentWork,
    FileVersion,
    TokenUsage,
)
from delegation_machine.engine.agents.builtin.targets import is_python_path
from delegation_machine.engine.memory.symbols import SymbolIndex, SymbolOccurrence
from delegation_machine.engine.protocol import Mutation, TextEdit
from delegation_machine.engine.supervise.python_parse import parses_as_python

MODULE_LEVEL_KINDS = frozenset({"function", "class", "variable"})
MEMBER_KINDS = frozenset({"method", "attribute"})
LOCAL_KINDS = frozenset({"local", "parameter"})
BINDING_IMPORT_KINDS = frozenset({"name", "alias"})


class RenameRefused(AgentFailure):
    """The rename was not attempted; the message says why and what to do."""


@dataclass(frozen=True)
class RenameRequest:
    old: str
    new: str
    path_hint: str | None = None


@dataclass
class FilePlan:
    """The occurrences to rewrite in one file and the text they index."""

    version: FileVersion
    occurrences: list[SymbolOccurrence] = field(default_factory=list)


def parse_rename_arguments(arguments: Mapping[str, Any]) -> RenameRequest:
    """Validate {"old": str, "new": str, "path"?: str}; raise RenameRefused naming the fault."""
    old, new, path = arguments.get("old"), arguments.get("new"), arguments.get("path")
    if not isinstance(old, str) or not isinstance(new, str):
        raise RenameRefused(
            'rename needs string arguments {"old": <current name>, "new": <new name>}; '
            f"got {dict(arguments)!r}"
        )
    for role, name in (("current", old), ("new", new)):
        if not name.isidentifier():
            raise RenameRefused(f"the {role} name {name!r} is not a valid Python identifier")
        if keyword.iskeyword(name):
            raise RenameRefused(f"the {role} name {name!r} is a Python keyword")
    if old == new:
        raise RenameRefused(f"nothing to rename: the old and new names are both {old!r}")
    if path is not None and not isinstance(path, str):
        raise RenameRefused(f'arguments["path"] must be a workspace-relative path, got {path!r}')
    return RenameRequest(old, new, path)


class RenameAgent:
    kind = "rename"

    def __init__(self, agent_id: str, *, workspace_root: Path) -> None:
        self.agent_id = agent_id
        self.workspace_root = workspace_root

    async def run(self, work: AgentWork) -> AgentResult:
        request = parse_rename_arguments(work.arguments)
        hint = request.path_hint or work.request.path
        root = work.workspace_root or self.workspace_root
        discovery = await _discovery_index(work, root)
        candidates = _candidate_paths(discovery, work, request.old)
        texts = {rel: _current_version(work, rel) for rel in candidates}
        private = SymbolIndex(root)
        for rel, version in texts.items():
            private.update_file(rel, version.text)
        plans = resolve_rename(private, texts, request, hint)
        mutations = tuple(self._mutation(work, rel, plan, request) for rel, plan in plans.items())
        count = sum(len(plan.occurrences) for plan in plans.values())
        notes = (
            f"renamed {request.old} -> {request.new}: {count} occurrence(s) in {len(plans)} file(s)"
        )
        return AgentResult(mutations, TokenUsage(tool_calls=1), notes)

    def _mutation(
        self, work: AgentWork, rel: str, plan: FilePlan, request: RenameRequest
    ) -> Mutation:
        spans = sorted({(o.start, o.end) for o in plan.occurrences})
        edits = tuple(TextEdit(start, end, request.new) for start, end in spans)
        return Mutation(
            task_id=work.task_id,
            agent_id=self.agent_id,
            path=rel,
            base_version=plan.version.version,
            edits=edits,
            description=f"rename {request.old} -> {request.new} ({len(edits)} occurrence(s))",
        )


async def _discovery_index(work: AgentWork, root: Path) -> SymbolIndex:
    """The shared index when the swarm passes one, else a private one built off the loop."""
    if isinstance(work.index, SymbolIndex):
        return work.index
    index = SymbolIndex(root)
    await asyncio.to_thread(index.build)
    return index


def _candidate_paths(index: SymbolIndex, work: AgentWork, old: str) -> list[str]:
    """Files whose identifiers mention `old` on disk or in the index, plus the task's files."""
    found = {o.path for o in index.occurrences(old) if is_python_path(o.path)}
    found.update(rel for rel in work.files if is_python_path(rel) and old in work.files[rel].text)
    return sorted(found)


def _current_version(work: AgentWork, rel: str) -> FileVersion:
    if rel in work.files:
        return work.files[rel]
    if work.read_file is None:
        raise RenameRefused(f"cannot read {rel}: the swarm passed no read_file to the agent")
    try:
        version: FileVersion = work.read_file(rel)
    except Exception as exc:  # the state layer's own refusal types; the message is what matters
        raise RenameRefused(f"cannot read {rel}, so nothing was renamed: {exc}") from exc
    return version


# --- resolution ---------------------------------------------------------------------------


def module_name(rel: str) -> str:
    """`pkg/mod.py` -> `pkg.mod`; `pkg/__init__.py` -> `pkg`."""
    parts = list(PurePosixPath(rel).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve_import_target(target: str, importer: str) -> str:
    """An import target with its leading dots resolved against the importing file."""
    dots = len(target) - len(target.lstrip("."))
    if dots == 0:
        return target
    package = module_name(importer).split(".")
    if not importer.endswith("__init__.py") and not importer.endswith("__init__.pyi"):
        package = package[:-1]
    base = package[: len(package) - (dots - 1)] if dots > 1 else package
    rest = target[dots:]
    return ".".join([*base, rest] if rest else base)


def names_module(target: str, module: str) -> bool:
    """True when an import target names `module`, allowing a source folder prefix (src/)."""
    return module == target or module.endswith("." + target)


def resolve_rename(
    index: SymbolIndex,
    texts: Mapping[str, FileVersion],
    request: RenameRequest,
    hint: str | None,
) -> dict[str, FilePlan]:
    """Every occurrence to rewrite, per file; raises RenameRefused when it cannot be safe."""
    definitions = [
        o for rel in texts for o in index.file_occurrences(rel) if _defines(o, request.old)
    ]
    top_level = [
        o for o in definitions if o.container is None and o.symbol_kind in MODULE_LEVEL_KINDS
    ]
    members = [o for o in definitions if o.symbol_kind in MEMBER_KINDS]
    top_level, members = _apply_hint(top_level, members, hint)
    if top_level:
        defining = sorted({o.path for o in top_level})
        if len(defining) > 1:
            where = ", ".join(_where(o) for o in top_level)
            raise RenameRefused(
                f"`{request.old}` is defined at module level in {len(defining)} files ({where}); "
                'say which one with arguments["path"] (or select it in the editor)'
            )
        plans = _module_symbol_plan(index, texts, request, defining[0])
    elif members:
        plans = _member_plan(index, texts, request, members)
    else:
        raise RenameRefused(
            f"no definition of `{request.old}` was found in the workspace's Python files "
            "(only module-level functions, classes, variables and class members can be renamed)"
        )
    _check_results_parse(texts, plans, request)
    return plans


def _defines(occurrence: SymbolOccurrence, name: str) -> bool:
    return occurrence.name == name and occurrence.kind == "definition"


def _apply_hint(
    top_level: list[SymbolOccurrence], members: list[SymbolOccurrence], hint: str | None
) -> tuple[list[SymbolOccurrence], list[SymbolOccurrence]]:
    if hint is None:
        return top_level, members
    hinted_top = [o for o in top_level if o.path == hint]
    hinted_members = [o for o in members if o.path == hint]
    if hinted_top or hinted_members:
        return hinted_top, hinted_members
    return top_level, members


def _where(occurrence: SymbolOccurrence) -> str:
    return f"{occurrence.path}:{occurrence.span.start.line + 1}"


def _module_symbol_plan(
    index: SymbolIndex, texts: Mapping[str, FileVersion], request: RenameRequest, home: str
) -> dict[str, FilePlan]:
    module = module_name(home)
    full_name = f"{module}.{request.old}"
    plans: dict[str, FilePlan] = {}
    for rel, version in texts.items():
        occurrences = index.file_occurrences(rel)
        picked = _pick_in_file(occurrences, rel, rel == home, module, full_name, request)
        if picked:
            plans[rel] = FilePlan(version, picked)
    return plans


def _pick_in_file(
    occurrences: list[SymbolOccurrence],
    rel: str,
    is_home: bool,
    module: str,
    full_name: str,
    request: RenameRequest,
) -> list[SymbolOccurrence]:
    old = request.old
    imports = [o for o in occurrences if o.kind == "import"]
    qualifiers = _module_qualifiers(imports, rel, module)
    name_imports = [
        o
        for o in imports
        if o.name == old
        and o.symbol_kind == "name"
        and o.target is not None
        and names_module(resolve_import_target(o.target, rel), full_name)
    ]
    binds_directly = is_home or any(not _is_aliased(o, imports) for o in name_imports)
    shadows = _shadowing_scopes(occurrences, old)
    picked: list[SymbolOccurrence] = list(name_imports)
    for o in occurrences:
        if o.name != old or o.kind == "import":
            continue
        if o.kind == "definition":
            if is_home and _is_module_binding(o, shadows):
                picked.append(o)
            continue
        if o.usage == "keyword":
            continue  # f(old=...) names a parameter, not this symbol
        if o.qualifier is not None:
            if o.qualifier in qualifiers:
                picked.append(o)
        elif binds_directly and not _shadowed(o.container, shadows):
            picked.append(o)
    if picked:
        _check_collisions(occurrences, picked, rel, request, binds_directly, is_home)
    return picked


def _module_qualifiers(imports: list[SymbolOccurrence], rel: str, module: str) -> set[str]:
    """Names this file uses for the defining module: `pricing`, `p`, `inventory.pricing`."""
    qualifiers = set()
    for o in imports:
        if o.target is None or not names_module(resolve_import_target(o.target, rel), module):
            continue
        if o.symbol_kind in BINDING_IMPORT_KINDS and not _is_aliased(o, imports):
            qualifiers.add(o.name)  # `from pkg import mod` or `... as alias`
        elif o.symbol_kind == "module":
            qualifiers.add(o.target)
    return qualifiers


def _is_aliased(occurrence: SymbolOccurrence, imports: list[SymbolOccurrence]) -> bool:
    """True for `x` in `import ... x as y`: the file binds y, not x."""
    if occurrence.symbol_kind == "alias":
        return False
    line = occurrence.span.start.line
    return any(
        o.symbol_kind == "alias"
        and o.target == occurrence.target
        and o.span.start.line == line
        and o.start > occurrence.end
        for o in imports
    )


def _shadowing_scopes(occurrences: list[SymbolOccurrence], name: str) -> set[str]:
    """Function scopes where `name` is a local or parameter (so not the module's symbol)."""
    declared_global = {o.container for o in occurrences if o.name == name and o.usage == "global"}
    return {
        o.container
        for o in occurrences
        if o.name == name
        and o.kind == "definition"
        and o.symbol_kind in LOCAL_KINDS
        and o.container is not None
        and o.container not in declared_global
    }


def _shadowed(container: str | None, shadows: Iterable[str]) -> bool:
    if container is None:
        return False
    return any(container == scope or container.startswith(scope + ".") for scope in shadows)


def _is_module_binding(occurrence: SymbolOccurrence, shadows: set[str]) -> bool:
    if occurrence.container is None:
        return occurrence.symbol_kind in MODULE_LEVEL_KINDS
    # `global old` inside a function makes its assignments module bindings.
    return occurrence.symbol_kind in LOCAL_KINDS and not _shadowed(occurrence.container, shadows)


def _check_collisions(
    occurrences: list[SymbolOccurrence],
    picked: list[SymbolOccurrence],
    rel: str,
    request: RenameRequest,
    binds_directly: bool,
    is_home: bool,
) -> None:
    new = request.new
    existing = [o for o in occurrences if o.name == new]
    module_bindings = [
        o
        for o in existing
        if o.container is None and (o.kind == "definition" or o.symbol_kind in BINDING_IMPORT_KINDS)
    ]
    if (is_home or binds_directly) and module_bindings:
        raise _collision(request, module_bindings[0])
    scopes = {o.container for o in picked if o.qualifier is None and o.container is not None}
    local_scopes = set()
    for o in existing:
        if o.kind == "definition" and o.symbol_kind in LOCAL_KINDS and o.container is not None:
            if _shadowed_any(o.container, scopes):
                raise _collision(request, o)
            local_scopes.add(o.container)
    renames_bare_names = is_home or binds_directly
    for o in existing:
        if not renames_bare_names or o.kind != "reference" or o.qualifier is not None:
            continue
        if o.usage in ("keyword", "attribute") or _shadowed(o.container, local_scopes):
            continue
        raise RenameRefused(
            f"renaming `{request.old}` to `{new}` would capture the existing use of `{new}` "
            f"at {_where(o)} (a builtin or a name from elsewhere); choose another name"
        )


def _shadowed_any(local_scope: str | None, reference_scopes: set[str]) -> bool:
    if local_scope is None:
        return False
    return any(s == local_scope or s.startswith(local_scope + ".") for s in reference_scopes)


def _collision(request: RenameRequest, existing: SymbolOccurrence) -> RenameRefused:
    scope = existing.container or "module scope"
    return RenameRefused(
        f"renaming `{request.old}` to `{request.new}` would collide with the existing "
        f"`{request.new}` at {_where(existing)} (in {scope}); choose another name"
    )


def _member_plan(
    index: SymbolIndex,
    texts: Mapping[str, FileVersion],
    request: RenameRequest,
    members: list[SymbolOccurrence],
) -> dict[str, FilePlan]:
    """A class member: its definitions and every `x.old` attribute use (types are unknown)."""
    classes = sorted({(o.path, o.container or "") for o in members})
    if len(classes) > 1:
        where = ", ".join(f"{path} ({cls})" for path, cls in classes)
        raise RenameRefused(
            f"`{request.old}` is a member of {len(classes)} classes ({where}); without types "
            "the rename cannot tell their uses apart, so it is refused"
        )
    path, owner = classes[0]
    clash = [
        o
        for o in index.file_occurrences(path)
        if o.name == request.new and o.kind == "definition" and o.container == owner
    ]
    if clash:
        raise _collision(request, clash[0])
    plans: dict[str, FilePlan] = {}
    for rel, version in texts.items():
        picked = [
            o
            for o in index.file_occurrences(rel)
            if o.name == request.old
            and (
                (o.kind == "definition" and o.symbol_kind in MEMBER_KINDS and o.container == owner)
                or (o.kind == "reference" and _follows_a_dot(version.text, o))
            )
        ]
        if picked:
            plans[rel] = FilePlan(version, picked)
    return plans


def _follows_a_dot(text: str, occurrence: SymbolOccurrence) -> bool:
    """True for `x.name` and `f().name`: an attribute access, whatever the object is."""
    return text[: occurrence.start].rstrip().endswith(".")


def _check_results_parse(
    texts: Mapping[str, FileVersion], plans: dict[str, FilePlan], request: RenameRequest
) -> None:
    for rel, plan in plans.items():
        before = texts[rel].text
        after = _renamed_text(before, plan.occurrences, request.new)
        if parses_as_python(before) and not parses_as_python(after):
            raise RenameRefused(f"renaming in {rel} would leave it unparsable; nothing changed")


def _renamed_text(text: str, occurrences: list[SymbolOccurrence], new: str) -> str:
    for start, end in sorted({(o.start, o.end) for o in occurrences}, reverse=True):
        text = text[:start] + new + text[end:]
    return text
