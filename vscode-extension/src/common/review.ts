// The task tree of the review view: tasks (with their state), their files and the pending
// hunks in each (from the server's `delegation.hunks`), and the pre-task text a diff shows.
// Plain logic, no vscode object: tree items are plain TreeItem-shaped records, so the node
// tests run it as is. Invariant: malformed server data is a ReviewDataError, never half-shown.
import type { LspRange } from "./commands";
import { type TaskBoard, type TaskUpdate } from "./tasks";

export interface Hunk {
  taskId: string;
  hunkId: string;
  uri: string;
  range: LspRange;
  before: string;
  after: string;
}

export type ReviewNode =
  | { kind: "task"; taskId: string; task: TaskUpdate | undefined; hunks: Hunk[] }
  | { kind: "file"; taskId: string; uri: string; hunks: Hunk[] }
  | { kind: "hunk"; taskId: string; hunkId: string; uri: string; hunk: Hunk };

/** TreeItemCollapsibleState values (vscode's enum, repeated so this file needs no vscode). */
export const COLLAPSED = 1;
export const EXPANDED = 2;
export const LEAF = 0;

export interface ReviewItem {
  label: string;
  description?: string;
  tooltip?: string;
  collapsibleState: number;
  contextValue: string;
  command?: { title: string; command: string; arguments: unknown[] };
}

export class ReviewDataError extends Error {
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${message} (at ${path})`);
    this.name = "ReviewDataError";
  }
}

function isPosition(value: unknown): boolean {
  const p = value as { line?: unknown; character?: unknown } | null;
  return !!p && Number.isInteger(p.line) && Number.isInteger(p.character);
}

/** Validate the result of `delegation.hunks`. */
export function parseHunks(raw: unknown): Hunk[] {
  const list = (raw as { hunks?: unknown } | null)?.hunks;
  if (!Array.isArray(list)) throw new ReviewDataError("delegation.hunks must return {hunks: [...]}", "$.hunks");
  return list.map((item, index) => {
    const where = `$.hunks[${index}]`;
    const h = item as Record<string, unknown> | null;
    if (!h || typeof h !== "object") throw new ReviewDataError("a hunk must be an object", where);
    for (const key of ["taskId", "hunkId", "uri", "before", "after"]) {
      if (typeof h[key] !== "string") throw new ReviewDataError(`${key} must be a string`, `${where}.${key}`);
    }
    const range = h.range as { start?: unknown; end?: unknown } | null;
    if (!range || !isPosition(range.start) || !isPosition(range.end)) {
      throw new ReviewDataError("range must be an LSP range", `${where}.range`);
    }
    return h as unknown as Hunk;
  });
}

function fileName(uri: string): string {
  const path = decodeURIComponent(uri.replace(/^file:\/\//, ""));
  return path.slice(path.lastIndexOf("/") + 1);
}

function firstLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim()) ?? "";
  return line.trim().slice(0, 60);
}

/** The tasks with pending hunks (and the tasks waiting for review), their files, their hunks. */
export class ReviewTree {
  private hunks: Hunk[] = [];

  constructor(private readonly board: TaskBoard) {}

  update(hunks: Hunk[]): void {
    this.hunks = hunks;
  }

  hunksOf(taskId: string, uri?: string): Hunk[] {
    return this.hunks.filter((h) => h.taskId === taskId && (uri === undefined || h.uri === uri));
  }

  children(node?: ReviewNode): ReviewNode[] {
    if (!node) {
      const ids = [...new Set(this.hunks.map((h) => h.taskId))];
      return ids.map((taskId) => ({ kind: "task", taskId, task: this.board.get(taskId), hunks: this.hunksOf(taskId) }));
    }
    if (node.kind === "task") {
      const uris = [...new Set(node.hunks.map((h) => h.uri))];
      return uris.map((uri) => ({ kind: "file", taskId: node.taskId, uri, hunks: this.hunksOf(node.taskId, uri) }));
    }
    if (node.kind === "file") {
      return node.hunks.map((hunk) => ({ kind: "hunk", taskId: hunk.taskId, hunkId: hunk.hunkId, uri: hunk.uri, hunk }));
    }
    return [];
  }

  item(node: ReviewNode, diffCommand: string): ReviewItem {
    if (node.kind === "task") {
      const state = node.task?.state ?? "pending";
      const what = node.task?.kind ? `${node.task.kind} ` : "";
      return {
        label: `${what}${node.taskId}`,
        description: `${state} · ${node.hunks.length} hunk${node.hunks.length === 1 ? "" : "s"}`,
        tooltip: node.task?.message ?? undefined,
        collapsibleState: EXPANDED,
        contextValue: "delegation.task",
      };
    }
    if (node.kind === "file") {
      return {
        label: fileName(node.uri),
        description: `${node.hunks.length} hunk${node.hunks.length === 1 ? "" : "s"}`,
        tooltip: node.uri,
        collapsibleState: EXPANDED,
        contextValue: "delegation.file",
        command: { title: "Show the diff", command: diffCommand, arguments: [node] },
      };
    }
    const { range, before, after } = node.hunk;
    const change = after && before ? "changed" : after ? "added" : "removed";
    return {
      label: `line ${range.start.line + 1}: ${change}`,
      description: firstLine(after || before),
      tooltip: `- ${before}\n+ ${after}`,
      collapsibleState: LEAF,
      contextValue: "delegation.hunk",
      command: { title: "Show the diff", command: diffCommand, arguments: [node] },
    };
  }
}

/** Offset of an LSP position (UTF-16 units, as VS Code counts) in `text`. */
function offsetOf(text: string, position: { line: number; character: number }): number {
  let offset = 0;
  for (let line = 0; line < position.line; line++) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(offset + position.character, text.length);
}

/** `current` with every one of these hunks rejected: the text before the task, keeping what
 * others typed since (the left side of the review diff). Hunks of one task never overlap. */
export function preTaskText(current: string, hunks: Hunk[]): string {
  const ordered = [...hunks].sort((a, b) => offsetOf(current, b.range.start) - offsetOf(current, a.range.start));
  let text = current;
  for (const hunk of ordered) {
    const start = offsetOf(text, hunk.range.start);
    const end = offsetOf(text, hunk.range.end);
    text = text.slice(0, start) + hunk.before + text.slice(end);
  }
  return text;
}
