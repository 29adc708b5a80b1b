"""Incremental re-indexing of one edited file: only the statement that holds the edit.

After a re-parse with the old tree, the smallest statement (a child of a module or block)
covering the edit and every range the parser reports as changed is re-extracted; occurrences
and scopes after it are shifted. Whenever that cannot be shown safe, the caller re-extracts the
whole file. Invariant: the result equals a full extraction of the new text.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import msgspec
import tree_sitter as ts

from delegation_machine.engine.memory.lang_python import extract_python
from delegation_machine.engine.memory.occurrence import RawScope, Scope, SymbolOccurrence
from delegation_machine.engine.memory.parsing import ParsedFile, byte_point
from delegation_machine.engine.protocol import Point, Span

_STATEMENT_PARENTS = frozenset({"module", "block"})
_SCOPE_TYPES = frozenset({"function_definition", "class_definition"})


@dataclass
class IndexedFile:
    """One indexed file: its parse, its occurrences (by offset) and its named scopes.

    The name -> occurrences map is built on first use, so an edit costs nothing until the
    file is queried by name.
    """

    parsed: ParsedFile
    occurrences: list[SymbolOccurrence]
    scopes: list[Scope]
    _by_name: dict[str, list[SymbolOccurrence]] | None = field(default=None, repr=False)

    def names(self) -> set[str]:
        return {occurrence.name for occurrence in self.occurrences}

    def named(self, name: str) -> list[SymbolOccurrence]:
        if self._by_name is None:
            by_name: dict[str, list[SymbolOccurrence]] = {}
            for occurrence in self.occurrences:
                bucket = by_name.get(occurrence.name)
                if bucket is None:
                    by_name[occurrence.name] = [occurrence]
                else:
                    bucket.append(occurrence)
            self._by_name = by_name
        return self._by_name.get(name, [])


def statement_unit(root: ts.Node, low: int, high: int) -> tuple[int, int, ts.Node] | None:
    """(start, end, container) of the fewest whole statements covering bytes [low, high].

    The container is the module or block that holds them. None means the whole file.
    """
    node: ts.Node | None = root.descendant_for_byte_range(low, high)
    while node is not None:
        parent = node.parent
        if node.type in _STATEMENT_PARENTS and node.start_byte <= low and high <= node.end_byte:
            # The range spans several statements (or a statement and its trailing comment).
            overlapping = [c for c in node.children if c.end_byte >= low and c.start_byte <= high]
            if not any(child.is_error for child in overlapping):
                start = min([low, *(c.start_byte for c in overlapping)])
                end = max([high, *(c.end_byte for c in overlapping)])
                return start, end, node
        elif (
            parent is not None
            and parent.type in _STATEMENT_PARENTS
            and node.is_named
            and not node.is_error
            and node.start_byte <= low
            and high <= node.end_byte
        ):
            return node.start_byte, node.end_byte, parent
        if parent is None:
            return None
        node = parent
    return None


def _enclosing_scope_ranges(container: ts.Node) -> list[tuple[int, int]]:
    """(start, end) of every named scope around `container` in the new tree, outermost first."""
    ranges: list[tuple[int, int]] = []
    node: ts.Node | None = container
    while node is not None:
        if node.type in _SCOPE_TYPES and node.child_by_field_name("name") is not None:
            ranges.append((node.start_byte, node.end_byte))
        node = node.parent
    return sorted(ranges)


def _affected_bytes(
    old_tree: ts.Tree, parsed: ParsedFile, edit_start: int, new_edit_end: int
) -> tuple[int, int]:
    """Bytes of the new text whose syntax may differ: the edited lines, the tokens the edit
    touches in the old and the new tree (a shortened token is not always a changed range),
    and every range tree-sitter reports as changed."""
    data = parsed.data
    low = data.rfind(b"\n", 0, edit_start) + 1
    line_end = data.find(b"\n", new_edit_end)
    high = len(data) if line_end < 0 else line_end
    for tree in (old_tree, parsed.tree):
        node = tree.root_node.descendant_for_byte_range(edit_start, new_edit_end)
        if node is not None:
            low = min(low, node.start_byte)
            high = max(high, node.end_byte)
    for changed in old_tree.changed_ranges(parsed.tree):
        low = min(low, changed.start_byte)
        high = max(high, changed.end_byte)
    return low, high


def _outside_scopes(
    scopes: list[Scope], unit_start: int, unit_end_old: int, delta: int
) -> list[RawScope] | None:
    outside: list[RawScope] = []
    for scope in scopes:
        if scope.start_byte >= unit_start and scope.end_byte <= unit_end_old:
            continue  # inside the unit: re-extracted
        if scope.end_byte <= unit_start:
            outside.append(scope.raw())
        elif scope.start_byte >= unit_end_old:
            outside.append(scope.raw(shift=delta))
        elif scope.start_byte <= unit_start and scope.end_byte >= unit_end_old:
            outside.append(scope.raw(grow=delta))
        else:
            return None
    return outside


def reindex_python_region(
    old: IndexedFile, parsed: ParsedFile, old_tree: ts.Tree
) -> IndexedFile | None:
    """Re-extract only the edited statement of `parsed`; None when the whole file must go."""
    if parsed.last_edit is None:
        same = [msgspec.structs.replace(o, path=parsed.path) for o in old.occurrences]
        return IndexedFile(parsed, same, old.scopes)
    edit_start, old_edit_end, new_edit_end = parsed.last_edit
    low, high = _affected_bytes(old_tree, parsed, edit_start, new_edit_end)
    unit = statement_unit(parsed.tree.root_node, low, high)
    if unit is None:
        return None
    unit_start, unit_end_new, container = unit
    delta = new_edit_end - old_edit_end
    unit_end_old = unit_end_new - delta
    if unit_start > edit_start or unit_end_old < old_edit_end:
        return None
    outside = _outside_scopes(old.scopes, unit_start, unit_end_old, delta)
    if outside is None:
        return None
    # The scopes that grew must be exactly the new tree's scopes around the unit: an edit
    # that moved a scope's end (a dangling token after a def) needs the whole file.
    grown = sorted((raw[0], raw[1]) for raw in outside if raw[0] <= unit_start < raw[1])
    if grown != _enclosing_scope_ranges(container):
        return None
    fresh, scopes = extract_python(parsed, (unit_start, unit_end_new), outside)
    before, after = _keep_outside(old, parsed, unit_start, unit_end_old, unit_end_new)
    return IndexedFile(parsed, before + fresh + after, scopes)


def _keep_outside(
    old: IndexedFile, parsed: ParsedFile, unit_start: int, unit_end_old: int, unit_end_new: int
) -> tuple[list[SymbolOccurrence], list[SymbolOccurrence]]:
    """Old occurrences before the unit (as they were) and after it (shifted into place)."""
    old_parsed = old.parsed
    start_offset = old_parsed.offsets.byte_to_offset(unit_start)
    end_offset_old = old_parsed.offsets.byte_to_offset(unit_end_old)
    starts = [occurrence.start for occurrence in old.occurrences]
    first_inside = bisect.bisect_left(starts, start_offset)
    first_after = bisect.bisect_left(starts, end_offset_old, lo=first_inside)
    before = old.occurrences[:first_inside]
    if first_after == len(old.occurrences):
        return before, []
    offset_delta = len(parsed.text) - len(old_parsed.text)
    old_row, old_byte_column = byte_point(old_parsed.data, unit_end_old)
    new_row, new_byte_column = byte_point(parsed.data, unit_end_new)
    row_delta = new_row - old_row
    column_delta = parsed.offsets.column(new_row, new_byte_column) - old_parsed.offsets.column(
        old_row, old_byte_column
    )
    after: list[SymbolOccurrence] = []
    append = after.append
    for o in old.occurrences[first_after:]:
        line = o.span.start.line
        if line != old_row and row_delta == 0:
            # Same line and columns: only the offsets move.
            span = o.span
        else:
            column = o.span.start.column + (column_delta if line == old_row else 0)
            line += row_delta
            span = Span(Point(line, column), Point(line, column + o.end - o.start))
        append(
            SymbolOccurrence(
                o.path, o.name, o.kind, o.start + offset_delta, o.end + offset_delta, span,
                o.container, o.symbol_kind, o.usage, o.qualifier, o.target, o.language,
            )
        )  # fmt: skip
    return before, after
