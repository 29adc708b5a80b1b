"""Python symbol extraction: definitions, references and imports from a tree-sitter tree.

Every identifier token outside strings and comments yields exactly one occurrence (f-string
interpolations are code and count). Specific query patterns classify a token; a token no
pattern classifies is a plain reference. Offsets are those of the identifier token itself.
"""

from __future__ import annotations

import tree_sitter as ts

from delegation_machine.engine.memory.occurrence import (
    RawScope,
    Scope,
    ScopeSweep,
    SymbolOccurrence,
    identifier_occurrence,
    nest_scopes,
    parent_scope,
)
from delegation_machine.engine.memory.parsing import ParsedFile, grammar

_QUERY_SOURCE = r"""
(function_definition name: (identifier) @scope.function) @scope.function.node
(class_definition name: (identifier) @scope.class) @scope.class.node

(parameters (identifier) @def.parameter)
(lambda_parameters (identifier) @def.parameter)
(default_parameter name: (identifier) @def.parameter)
(typed_default_parameter name: (identifier) @def.parameter)
(typed_parameter (identifier) @def.parameter)
(typed_parameter (list_splat_pattern (identifier) @def.parameter))
(typed_parameter (dictionary_splat_pattern (identifier) @def.parameter))
(parameters (list_splat_pattern (identifier) @def.parameter))
(parameters (dictionary_splat_pattern (identifier) @def.parameter))
(lambda_parameters (list_splat_pattern (identifier) @def.parameter))
(lambda_parameters (dictionary_splat_pattern (identifier) @def.parameter))

(assignment left: (identifier) @def.binding)
(assignment left: [(pattern_list) (tuple_pattern) (list_pattern)] @def.pattern)
(augmented_assignment left: (identifier) @ref.store)
(for_statement left: (identifier) @def.binding)
(for_statement left: [(pattern_list) (tuple_pattern) (list_pattern)] @def.pattern)
(for_in_clause left: (identifier) @def.local)
(for_in_clause left: [(pattern_list) (tuple_pattern) (list_pattern)] @def.local_pattern)
(as_pattern_target (identifier) @def.binding)
(as_pattern alias: (as_pattern_target [(tuple) (list) (pattern_list) (tuple_pattern)] @def.pattern))
(named_expression name: (identifier) @def.binding)
(type_alias_statement left: (type (identifier) @def.type))

(import_statement) @import.plain
(import_from_statement) @import.from
(future_import_statement) @import.future

(keyword_argument name: (identifier) @ref.keyword)
(call function: (identifier) @ref.call)
(call function: (attribute attribute: (identifier) @ref.call))
(decorator (identifier) @ref.decorator)
(decorator (attribute attribute: (identifier) @ref.decorator))
(decorator (call function: (identifier) @ref.decorator))
(decorator (call function: (attribute attribute: (identifier) @ref.decorator)))
(global_statement (identifier) @ref.global)
(nonlocal_statement (identifier) @ref.global)
(type (identifier) @ref.type)
(attribute) @attribute
(identifier) @ref.load
"""

_PATTERN_NODE_TYPES = {"pattern_list", "tuple_pattern", "list_pattern", "tuple", "list"}


def _query() -> ts.Query:
    global _CACHED_QUERY
    if _CACHED_QUERY is None:
        _CACHED_QUERY = ts.Query(grammar("python"), _QUERY_SOURCE)
    return _CACHED_QUERY


_CACHED_QUERY: ts.Query | None = None


def _pattern_identifiers(node: ts.Node) -> list[ts.Node]:
    """Identifiers bound by a destructuring target (`a, (b, *c) = ...`)."""
    found: list[ts.Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "identifier":
            found.append(current)
        elif current.type in _PATTERN_NODE_TYPES or current.type in (
            "list_splat_pattern",
            "parenthesized_expression",
            "list_splat",
        ):
            stack.extend(reversed(current.named_children))
    return found


def _dotted_text(node: ts.Node, data: bytes) -> str | None:
    """The text of an identifier/attribute chain, or None for any other expression."""
    if node.type not in ("identifier", "attribute"):
        return None
    text = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
    parts = text.split(".")
    if all(part.strip().isidentifier() for part in parts):
        return ".".join(part.strip() for part in parts)
    return None


class _Classified:
    """Per-token classification collected from the query, keyed by start byte."""

    def __init__(self) -> None:
        self.by_start: dict[int, tuple[ts.Node, str, str | None, str | None, str | None]] = {}

    def put(
        self,
        node: ts.Node,
        kind: str,
        detail: str | None,
        qualifier: str | None = None,
        target: str | None = None,
    ) -> None:
        self.by_start.setdefault(node.start_byte, (node, kind, detail, qualifier, target))

    def put_all(self, nodes: list[ts.Node], kind: str, detail: str | None) -> None:
        setdefault = self.by_start.setdefault
        for node in nodes:
            setdefault(node.start_byte, (node, kind, detail, None, None))


def _classify_imports(
    captures: dict[str, list[ts.Node]], data: bytes, classified: _Classified
) -> None:
    for statement in captures.get("import.plain", ()):
        for name in statement.children_by_field_name("name"):
            if name.type == "aliased_import":
                dotted = name.child_by_field_name("name")
                alias = name.child_by_field_name("alias")
                if dotted is not None:
                    _classify_module_path(dotted, data, classified)
                    if alias is not None:
                        full = (
                            _dotted_text(dotted, data)
                            or data[dotted.start_byte : dotted.end_byte].decode()
                        )
                        classified.put(alias, "import", "alias", None, full)
            else:
                _classify_module_path(name, data, classified)
    for statement in [*captures.get("import.from", ()), *captures.get("import.future", ())]:
        module = statement.child_by_field_name("module_name")
        module_text = "__future__"
        if module is not None:
            module_text = data[module.start_byte : module.end_byte].decode().replace(" ", "")
            dotted_names = _module_dotted_names(module)
            if dotted_names and any(c.type == "wildcard_import" for c in statement.children):
                # `from .m import *`: its last segment carries the whole (relative) module.
                last = dotted_names[-1].named_children[-1]
                classified.put(last, "import", "module_star", None, module_text)
            for dotted in dotted_names:
                _classify_module_path(dotted, data, classified, "module_path")
        for name in statement.children_by_field_name("name"):
            if name.type == "aliased_import":
                dotted = name.child_by_field_name("name")
                alias = name.child_by_field_name("alias")
                if dotted is None:
                    continue
                imported = data[dotted.start_byte : dotted.end_byte].decode()
                full = _join_module(module_text, imported)
                for identifier in dotted.named_children:
                    classified.put(identifier, "import", "name", None, full)
                if alias is not None:
                    classified.put(alias, "import", "alias", None, full)
            elif name.type == "dotted_name":
                imported = data[name.start_byte : name.end_byte].decode()
                full = _join_module(module_text, imported)
                for identifier in name.named_children:
                    classified.put(identifier, "import", "name", None, full)


def _join_module(module: str, name: str) -> str:
    return f"{module}{name}" if module.endswith(".") else f"{module}.{name}"


def _module_dotted_names(module: ts.Node) -> list[ts.Node]:
    if module.type == "dotted_name":
        return [module]
    return [child for child in module.named_children if child.type == "dotted_name"]


def _classify_module_path(
    dotted: ts.Node, data: bytes, classified: _Classified, detail: str = "module"
) -> None:
    """Each segment of `a.b.c` in an import is an import of module `a`, `a.b`, `a.b.c`.

    detail is "module" in `import a.b` (which binds `a`) and "module_path" in
    `from a.b import x` (which binds only `x`).
    """
    prefix = ""
    for identifier in dotted.named_children:
        segment = data[identifier.start_byte : identifier.end_byte].decode()
        prefix = f"{prefix}.{segment}" if prefix else segment
        classified.put(identifier, "import", detail, None, prefix)


def extract_python(
    parsed: ParsedFile,
    region: tuple[int, int] | None = None,
    outside_scopes: list[RawScope] | None = None,
) -> tuple[list[SymbolOccurrence], list[Scope]]:
    """Occurrences of one parsed Python file (ordered by offset) and all its named scopes.

    With `region` (a byte range of whole statements), only occurrences starting inside it
    come back; `outside_scopes` are the file's scopes outside the region, already placed in
    the new text, so containers and qualified names stay right.
    """
    data = parsed.data
    cursor = ts.QueryCursor(_query())
    if region is not None:
        cursor.set_byte_range(region[0], region[1])
    captures = cursor.captures(parsed.tree.root_node)
    classified = _Classified()

    raw_scopes: list[RawScope] = list(outside_scopes or ())
    for kind in ("function", "class"):
        names = captures.get(f"scope.{kind}", [])
        nodes = captures.get(f"scope.{kind}.node", [])
        name_by_parent = {name.parent.id: name for name in names if name.parent is not None}
        for node in nodes:
            name = name_by_parent.get(node.id)
            if name is None:
                continue
            if region is not None and not (region[0] <= node.start_byte < region[1]):
                continue  # an enclosing scope: it is among outside_scopes
            raw_scopes.append(
                (
                    node.start_byte,
                    node.end_byte,
                    name.start_byte,
                    data[name.start_byte : name.end_byte].decode("utf-8", "replace"),
                    kind,
                )
            )
            classified.put(name, "definition", kind)
    scopes = nest_scopes(raw_scopes)

    _classify_imports(captures, data, classified)
    classified.put_all(captures.get("def.parameter", []), "definition", "parameter")
    for node in captures.get("def.type", ()):
        classified.put(node, "definition", "type")
    for node in captures.get("def.binding", ()):
        classified.put(node, "definition", "binding")
    for node in captures.get("def.local", ()):
        classified.put(node, "definition", "local")
    for pattern in captures.get("def.pattern", ()):
        for node in _pattern_identifiers(pattern):
            classified.put(node, "definition", "binding")
    for pattern in captures.get("def.local_pattern", ()):
        for node in _pattern_identifiers(pattern):
            classified.put(node, "definition", "local")
    # Decorator, then call usage win over the generic attribute usage, so they go first.
    for usage in ("decorator", "call", "keyword", "global", "store", "type"):
        for node in captures.get(f"ref.{usage}", ()):
            qualifier = None
            parent = node.parent
            if parent is not None and parent.type == "attribute":
                obj = parent.child_by_field_name("object")
                qualifier = _dotted_text(obj, data) if obj is not None else None
            classified.put(node, "reference", usage, qualifier)
    for attribute in captures.get("attribute", ()):
        name = attribute.child_by_field_name("attribute")
        obj = attribute.child_by_field_name("object")
        if name is not None and name.type == "identifier":
            qualifier = _dotted_text(obj, data) if obj is not None else None
            classified.put(name, "reference", "attribute", qualifier)
    classified.put_all(captures.get("ref.load", []), "reference", "load")
    if region is not None:
        low, high = region
        classified.by_start = {
            start: value for start, value in classified.by_start.items() if low <= start < high
        }
    return _occurrences(parsed, classified, scopes), scopes


def _occurrences(
    parsed: ParsedFile, classified: _Classified, scopes: list[Scope]
) -> list[SymbolOccurrence]:
    data = parsed.data
    is_ascii = parsed.offsets.is_ascii
    line_starts = parsed.offsets.line_code_point_starts
    sweep = ScopeSweep(scopes)
    result: list[SymbolOccurrence] = []
    by_start = classified.by_start
    ordered = sorted(by_start)
    previous_byte = ordered[0] if ordered else 0
    previous_offset = previous_byte if is_ascii else parsed.offsets.byte_to_offset(previous_byte)
    for start_byte in ordered:
        node, kind, detail, qualifier, target = by_start[start_byte]
        name = data[start_byte : node.end_byte].decode("utf-8", "replace")
        row, byte_column = node.start_point
        if is_ascii:
            start, column = start_byte, byte_column
        else:
            # Identifiers never span lines, so one running decode gives every offset.
            start = previous_offset + len(data[previous_byte:start_byte].decode("utf-8", "replace"))
            previous_byte, previous_offset = start_byte, start
            column = start - line_starts[row]
        scope = sweep.enclosing(start_byte)
        if scope is not None and scope.name_start_byte == start_byte:
            # A def's own name belongs to the scope that contains the def.
            container = scope.qualname.rpartition(".")[0] or None
            parent = parent_scope(scopes, scope)
            enclosing_kind = parent.kind if parent is not None else None
        else:
            container = scope.qualname if scope is not None else None
            enclosing_kind = scope.kind if scope is not None else None
        symbol_kind: str | None = None
        usage: str | None = None
        if kind == "definition":
            symbol_kind = _definition_kind(detail, enclosing_kind)
        elif kind == "import":
            symbol_kind = detail
        else:
            usage = detail
        result.append(
            identifier_occurrence(
                parsed.path,
                name,
                kind,
                start,
                row,
                column,
                container=container,
                symbol_kind=symbol_kind,
                usage=usage,
                qualifier=qualifier,
                target=target,
                language="python",
            )
        )
    return result


def _definition_kind(detail: str | None, enclosing_kind: str | None) -> str:
    if detail == "function":
        return "method" if enclosing_kind == "class" else "function"
    if detail == "binding":
        if enclosing_kind is None:
            return "variable"
        return "attribute" if enclosing_kind == "class" else "local"
    return detail or "variable"
