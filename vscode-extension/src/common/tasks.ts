// Keeps the latest `delegation/taskUpdated` per task and renders it for the status bar and the
// output channel. Owns no vscode object: extension.ts pushes the rendered text into them.
// Invariant: a malformed notification is reported as a TaskUpdateError, never half-applied.

export const TASK_STATES = [
  "queued",
  "waiting",
  "running",
  "checking",
  "verified",
  "failed",
  "escalated",
  "cancelled",
  "accepted",
  "rejected",
  "no-change",
  "held",
] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** States in which the task still works; the user can cancel it. */
export const ACTIVE_STATES: readonly TaskState[] = ["queued", "waiting", "running", "checking"];
/** States in which the task's edits wait for the user's accept or reject. */
export const REVIEW_STATES: readonly TaskState[] = [
  "verified",
  "failed",
  "escalated",
  "no-change",
  "held",
];

export interface TaskUpdate {
  taskId: string;
  state: TaskState;
  agent: string | null;
  files: string[];
  tokens: number | null;
  verdicts: unknown[];
  kind: string | null;
  message: string | null;
}

export class TaskUpdateError extends Error {
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(`${message} (at ${path})`);
    this.name = "TaskUpdateError";
  }
}

function totalTokens(value: unknown): number | null {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (value && typeof value === "object") {
    // The server may send a usage object; its numeric fields add up to the total spent.
    const record = value as Record<string, unknown>;
    if (typeof record.total === "number") return record.total;
    const numbers = Object.values(record).filter((v): v is number => typeof v === "number");
    return numbers.length > 0 ? numbers.reduce((a, b) => a + b, 0) : null;
  }
  return null;
}

function optionalString(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

/** Validate the params of a `delegation/taskUpdated` notification. */
export function parseTaskUpdate(raw: unknown): TaskUpdate {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new TaskUpdateError("taskUpdated params must be an object", "$");
  }
  const params = raw as Record<string, unknown>;
  if (typeof params.taskId !== "string" || params.taskId.length === 0) {
    throw new TaskUpdateError("taskId must be a non-empty string", "$.taskId");
  }
  if (!TASK_STATES.includes(params.state as TaskState)) {
    throw new TaskUpdateError(`unknown state ${JSON.stringify(params.state)}`, "$.state");
  }
  const files = params.files ?? [];
  if (!Array.isArray(files) || !files.every((f) => typeof f === "string")) {
    throw new TaskUpdateError("files must be a list of strings", "$.files");
  }
  const verdicts = params.verdicts ?? [];
  if (!Array.isArray(verdicts)) throw new TaskUpdateError("verdicts must be a list", "$.verdicts");
  return {
    taskId: params.taskId,
    state: params.state as TaskState,
    agent: optionalString(params.agent),
    files: files as string[],
    tokens: totalTokens(params.tokens),
    verdicts,
    kind: optionalString(params.kind),
    message: optionalString(params.message),
  };
}

export interface StatusText {
  text: string;
  tooltip: string;
}

export class TaskBoard {
  private readonly tasks = new Map<string, TaskUpdate>();

  /** Record an update; returns the previous state (undefined for a new task). */
  record(update: TaskUpdate): TaskState | undefined {
    const previous = this.tasks.get(update.taskId)?.state;
    this.tasks.set(update.taskId, update);
    return previous;
  }

  get(taskId: string): TaskUpdate | undefined {
    return this.tasks.get(taskId);
  }

  list(states?: readonly TaskState[]): TaskUpdate[] {
    const all = [...this.tasks.values()];
    return states ? all.filter((t) => states.includes(t.state)) : all;
  }

  statusText(): StatusText {
    const active = this.list(ACTIVE_STATES).length;
    const review = this.list(REVIEW_STATES).length;
    const parts: string[] = [];
    if (active > 0) parts.push(`$(sync~spin) ${active} working`);
    if (review > 0) parts.push(`$(checklist) ${review} to review`);
    const text = parts.length > 0 ? `Delegation: ${parts.join(", ")}` : "$(hubot) Delegation";
    const lines = this.list().map((t) => describeTask(t));
    return { text, tooltip: lines.length > 0 ? lines.join("\n") : "No delegated tasks yet" };
  }
}

/** One log line: `task t1 [fix] verified by agent a1 — a.py (120 tokens): message`. */
export function describeTask(task: TaskUpdate): string {
  const kind = task.kind ? ` [${task.kind}]` : "";
  const agent = task.agent ? ` by ${task.agent}` : "";
  const files = task.files.length > 0 ? ` — ${task.files.join(", ")}` : "";
  const tokens = task.tokens !== null ? ` (${task.tokens} tokens)` : "";
  const message = task.message ? `: ${task.message}` : "";
  return `task ${task.taskId}${kind} ${task.state}${agent}${files}${tokens}${message}`;
}
