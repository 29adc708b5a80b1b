"""Symbol extraction for JavaScript, TypeScript, Go and Rust from tree-sitter trees.

One query per grammar classifies identifier tokens with capture names: `scope.<kind>` (a named
scope and its definition; `scope.<kind>.node` is the whole node), `def.<kind>`, `import.<kind>`
and `ref.<usage>`; a token no specific pattern claims is a plain reference. Offsets are those
of the identifier token itself; string contents are never occurrences, except a Go import
path's last segment, which is the package name the file then uses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

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

_JAVASCRIPT_COMMON = r"""
(function_declaration name: (identifier) @scope.function) @scope.function.node
(generator_function_declaration name: (identifier) @scope.function) @scope.function.node
(method_definition name: (property_identifier) @scope.method) @scope.method.node
(variable_declarator name: (identifier) @def.binding)
(arrow_function parameter: (identifier) @def.parameter)
(import_specifier alias: (identifier) @import.alias)
(import_specifier name: (identifier) @import.name)
(import_clause (identifier) @import.name)
(namespace_import (identifier) @import.alias)
(export_specifier name: (identifier) @ref.export)
(import_statement) @import.statement
(call_expression function: (identifier) @ref.call)
(call_expression function: (member_expression property: (property_identifier) @ref.call))
(new_expression constructor: (identifier) @ref.call)
(member_expression property: (property_identifier) @ref.attribute)
(decorator (identifier) @ref.decorator)
(shorthand_property_identifier) @ref.load
(property_identifier) @ref.property
(identifier) @ref.load
"""

_JAVASCRIPT = (
    r"""
(class_declaration name: (identifier) @scope.class) @scope.class.node
(field_definition property: (property_identifier) @def.attribute)
(formal_parameters (identifier) @def.parameter)
(formal_parameters (assignment_pattern left: (identifier) @def.parameter))
"""
    + _JAVASCRIPT_COMMON
)

_TYPESCRIPT = (
    r"""
(class_declaration name: (type_identifier) @scope.class) @scope.class.node
(abstract_class_declaration name: (type_identifier) @scope.class) @scope.class.node
(interface_declaration name: (type_identifier) @scope.interface) @scope.interface.node
(enum_declaration name: (identifier) @scope.enum) @scope.enum.node
(type_alias_declaration name: (type_identifier) @def.type)
(public_field_definition name: (property_identifier) @def.attribute)
(property_signature name: (property_identifier) @def.attribute)
(required_parameter pattern: (identifier) @def.parameter)
(optional_parameter pattern: (identifier) @def.parameter)
(type_identifier) @ref.type
"""
    + _JAVASCRIPT_COMMON
)

_GO = r"""
(function_declaration name: (identifier) @scope.function) @scope.function.node
(method_declaration name: (field_identifier) @scope.method) @scope.method.node
(type_spec name: (type_identifier) @def.type)
(const_spec name: (identifier) @def.binding)
(var_spec name: (identifier) @def.binding)
(short_var_declaration left: (expression_list (identifier) @def.local))
(parameter_declaration name: (identifier) @def.parameter)
(variadic_parameter_declaration name: (identifier) @def.parameter)
(field_declaration name: (field_identifier) @def.attribute)
(import_spec name: (package_identifier) @import.alias)
(import_spec) @import.statement
(call_expression function: (identifier) @ref.call)
(call_expression function: (selector_expression field: (field_identifier) @ref.call))
(selector_expression field: (field_identifier) @ref.attribute)
(type_identifier) @ref.type
(package_identifier) @ref.load
(field_identifier) @ref.attribute
(identifier) @ref.load
"""

_RUST = r"""
(function_item name: (identifier) @scope.function) @scope.function.node
(function_signature_item name: (identifier) @def.function)
(struct_item name: (type_identifier) @scope.struct) @scope.struct.node
(enum_item name: (type_identifier) @scope.enum) @scope.enum.node
(trait_item name: (type_identifier) @scope.trait) @scope.trait.node
(impl_item type: (type_identifier) @scope.impl) @scope.impl.node
(mod_item name: (identifier) @scope.module) @scope.module.node
(const_item name: (identifier) @def.binding)
(static_item name: (identifier) @def.binding)
(type_item name: (type_identifier) @def.type)
(let_declaration pattern: (identifier) @def.local)
(parameter pattern: (identifier) @def.parameter)
(field_declaration name: (field_identifier) @def.attribute)
(enum_variant name: (identifier) @def.variant)
(use_declaration) @import.statement
(call_expression function: (identifier) @ref.call)
(call_expression function: (field_expression field: (field_identifier) @ref.call))
(call_expression function: (scoped_identifier name: (identifier) @ref.call))
(macro_invocation macro: (identifier) @ref.macro)
(field_expression field: (field_identifier) @ref.attribute)
(type_identifier) @ref.type
(field_identifier) @ref.attribute
(identifier) @ref.load
"""

_QUERIES = {
    "javascript": _JAVASCRIPT,
    "typescript": _TYPESCRIPT,
    "tsx": _TYPESCRIPT,
    "go": _GO,
    "rust": _RUST,
}

# Scope kinds that are not definitions of their name (a Rust `impl Ledger` names a type).
_REFERENCE_SCOPES = frozenset({"impl"})
_IDENTIFIER_TYPES = frozenset(
    {"identifier", "type_identifier", "field_identifier", "property_identifier"}
)
_MEMBER_PARENTS = {
    "member_expression": "object",
    "selector_expression": "operand",
    "field_expression": "value",
    "scoped_identifier": "path",
}

_CAPTURE_PRIORITY = {"ref.decorator": 0, "ref.call": 1, "ref.macro": 2, "ref.export": 3}

Extraction = tuple[list[SymbolOccurrence], list[Scope]]


@cache
def _query(language: str) -> ts.Query:
    return ts.Query(grammar(language), _QUERIES[language])


def extractor_for(language: str) -> Callable[[ParsedFile], Extraction]:
    """The extraction function for a non-Python grammar."""
    if language not in _QUERIES:
        raise ValueError(f"no symbol extractor for language {language!r}")
    return extract_other


def extract_other(parsed: ParsedFile) -> Extraction:
    """All occurrences (ordered by offset) and named scopes of one JS/TS/Go/Rust file."""
    data = parsed.data
    captures = ts.QueryCursor(_query(parsed.language)).captures(parsed.tree.root_node)
    by_start: dict[int, tuple[ts.Node, str, str, str | None]] = {}

    raw_scopes: list[RawScope] = []
    for capture, nodes in captures.items():
        if not capture.startswith("scope.") or capture.endswith(".node"):
            continue
        kind = capture.removeprefix("scope.")
        name_by_parent = {n.parent.id: n for n in nodes if n.parent is not None}
        for node in captures.get(f"{capture}.node", []):
            name = name_by_parent.get(node.id)
            if name is None:
                continue
            text = data[name.start_byte : name.end_byte].decode("utf-8", "replace")
            raw_scopes.append((node.start_byte, node.end_byte, name.start_byte, text, kind))
            if kind in _REFERENCE_SCOPES:
                by_start.setdefault(name.start_byte, (name, "reference", "type", None))
            else:
                by_start.setdefault(name.start_byte, (name, "definition", kind, None))
    scopes = nest_scopes(raw_scopes)

    for statement in captures.get("import.statement", []):
        _classify_import_statement(parsed.language, statement, data, by_start)
    for prefix, kind in (("def.", "definition"), ("import.", "import"), ("ref.", "reference")):
        names = [c for c in captures if c.startswith(prefix) and c != "import.statement"]
        # Calls, decorators and macros are more specific than member access: they go first.
        for capture in sorted(names, key=lambda c: _CAPTURE_PRIORITY.get(c, 50)):
            if capture == "ref.load":
                continue  # the fallback: last
            detail = capture.removeprefix(prefix)
            for node in captures[capture]:
                by_start.setdefault(node.start_byte, (node, kind, detail, None))
    for node in captures.get("ref.load", []):
        by_start.setdefault(node.start_byte, (node, "reference", "load", None))
    return _occurrences(parsed, by_start, scopes), scopes


def _classify_import_statement(
    language: str,
    statement: ts.Node,
    data: bytes,
    by_start: dict[int, tuple[ts.Node, str, str, str | None]],
) -> None:
    """Imports whose names need the whole statement: JS sources, Go paths, Rust use trees."""
    if language == "go":
        path = statement.child_by_field_name("path")
        if path is None:
            return
        content = next((c for c in path.named_children), None)
        if content is None:
            return
        target = data[content.start_byte : content.end_byte].decode("utf-8", "replace")
        if statement.child_by_field_name("name") is None:
            # The package name the file uses is the path's last segment, inside the string.
            last = target.rsplit("/", 1)[-1]
            start = content.end_byte - len(last.encode("utf-8"))
            by_start.setdefault(start, (content, "import", "module", target))
        return
    if language == "rust":
        argument = statement.child_by_field_name("argument")
        if argument is None:
            return
        target = data[argument.start_byte : argument.end_byte].decode("utf-8", "replace")
        for node in _identifiers_under(argument):
            parent = node.parent
            detail = "module"
            if parent is not None and parent.type == "use_as_clause":
                detail = "alias" if parent.child_by_field_name("alias") == node else "name"
            elif _is_last_segment(node, parent):
                detail = "name"
            by_start.setdefault(node.start_byte, (node, "import", detail, target))
        return
    source = statement.child_by_field_name("source")
    if source is None:
        return
    target = data[source.start_byte : source.end_byte].decode("utf-8", "replace").strip("'\"`")
    for node in _identifiers_under(statement):
        parent = node.parent
        detail = "name"
        if parent is not None and parent.type == "namespace_import":
            detail = "alias"
        elif parent is not None and parent.type == "import_specifier":
            detail = "alias" if parent.child_by_field_name("alias") == node else "name"
        by_start.setdefault(node.start_byte, (node, "import", detail, target))


def _is_last_segment(node: ts.Node, parent: ts.Node | None) -> bool:
    """In a Rust use path `a::b::c`, only `c` is the imported name."""
    if parent is None or parent.type != "scoped_identifier":
        return True
    if parent.child_by_field_name("name") != node:
        return False
    grandparent = parent.parent
    return not (
        grandparent is not None
        and grandparent.type == "scoped_identifier"
        and grandparent.child_by_field_name("path") == parent
    )


def _identifiers_under(node: ts.Node) -> list[ts.Node]:
    found: list[ts.Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type in _IDENTIFIER_TYPES:
            found.append(current)
        else:
            stack.extend(reversed(current.named_children))
    return found


def _qualifier(node: ts.Node, data: bytes) -> str | None:
    parent = node.parent
    if parent is None or parent.type not in _MEMBER_PARENTS:
        return None
    obj = parent.child_by_field_name(_MEMBER_PARENTS[parent.type])
    if obj is None or obj == node:
        return None
    text = data[obj.start_byte : obj.end_byte].decode("utf-8", "replace")
    parts = text.replace("::", ".").split(".")
    return ".".join(parts) if all(part.isidentifier() for part in parts) else None


def _occurrences(
    parsed: ParsedFile,
    by_start: dict[int, tuple[ts.Node, str, str, str | None]],
    scopes: list[Scope],
) -> list[SymbolOccurrence]:
    data = parsed.data
    sweep = ScopeSweep(scopes)
    result: list[SymbolOccurrence] = []
    for start_byte in sorted(by_start):
        node, kind, detail, target = by_start[start_byte]
        end_byte = node.end_byte
        name = data[start_byte:end_byte].decode("utf-8", "replace")
        start = parsed.offsets.byte_to_offset(start_byte)
        row, byte_column = node.start_point
        if node.start_byte != start_byte:  # a Go import path segment inside the string
            byte_column += start_byte - node.start_byte
        column = parsed.offsets.column(row, byte_column)
        scope = sweep.enclosing(start_byte)
        if scope is not None and scope.name_start_byte == start_byte:
            container = scope.qualname.rpartition(".")[0] or None
            parent = parent_scope(scopes, scope)
            enclosing_kind = parent.kind if parent is not None else None
        else:
            container = scope.qualname if scope is not None else None
            enclosing_kind = scope.kind if scope is not None else None
        symbol_kind = usage = qualifier = None
        if kind == "definition":
            symbol_kind = _definition_kind(detail, enclosing_kind)
        elif kind == "import":
            symbol_kind = detail
        else:
            usage = detail
            if detail in ("attribute", "call", "property"):
                qualifier = _qualifier(node, data)
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
                language=parsed.language,
            )
        )
    return result


def _definition_kind(detail: str, enclosing_kind: str | None) -> str:
    if detail == "function" and enclosing_kind in ("class", "impl", "trait", "struct"):
        return "method"
    if detail == "binding":
        if enclosing_kind is None:
            return "variable"
        return "attribute" if enclosing_kind in ("class", "struct") else "local"
    return detail
