// The user-facing commands: ask for what is missing (instruction, task id), then send one
// `workspace/executeCommand` to the server. The server connection is passed in as a
// `ServerCommands` so tests drive these functions with a recording fake.
import type { LogOutputChannel, TextEditor } from "vscode";
import { ServerCommand } from "./constants";
import { ACTIVE_STATES, REVIEW_STATES, type TaskBoard, type TaskState } from "./tasks";
import * as vscodeapi from "./vscodeapi";

export interface ServerCommands {
  /** Send `workspace/executeCommand`; resolves to the server's result. */
  execute(command: string, args: unknown[]): Promise<unknown>;
}

export interface LspRange {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

export interface DelegateArguments {
  uri: string;
  range: LspRange;
  instruction: string;
  kind?: string;
  agents?: number;
}

const BUILT_IN_HINT = "fix | format | check | rename OLD NEW | or any instruction for the model";

/** Returns a message when the instruction cannot be sent as typed, else undefined. */
export function validateInstruction(value: string): string | undefined {
  const text = value.trim();
  if (!text) return "Type an instruction, e.g. `fix` or `rename old_name new_name`.";
  const words = text.split(/\s+/);
  if (words[0] === "rename" && (words.length !== 3 || !words.slice(1).every(isIdentifier))) {
    return "rename needs two identifiers: `rename OLD NEW`.";
  }
  return undefined;
}

function isIdentifier(word: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_.]*$/.test(word);
}

/** The LSP range of the selection; an empty selection means the whole document. */
export function selectionRange(editor: TextEditor): LspRange {
  const { selection, document } = editor;
  if (!selection.isEmpty) {
    return {
      start: { line: selection.start.line, character: selection.start.character },
      end: { line: selection.end.line, character: selection.end.character },
    };
  }
  const last = document.lineAt(Math.max(document.lineCount - 1, 0));
  return { start: { line: 0, character: 0 }, end: { line: last.lineNumber, character: last.text.length } };
}

function taskIdOf(result: unknown): string | undefined {
  if (result && typeof result === "object" && typeof (result as { taskId?: unknown }).taskId === "string") {
    return (result as { taskId: string }).taskId;
  }
  return undefined;
}

export async function delegateSelection(
  server: ServerCommands,
  log: LogOutputChannel,
  options: { agents: number; instruction?: string },
): Promise<string | undefined> {
  const editor = vscodeapi.getActiveTextEditor();
  if (!editor) {
    await vscodeapi.showErrorMessage("Delegation: open a file and select the code to delegate.");
    return undefined;
  }
  const instruction =
    options.instruction ??
    (await vscodeapi.showInputBox({
      title: "Delegate selection",
      prompt: "What should the agents do with the selected code?",
      placeHolder: BUILT_IN_HINT,
      validateInput: validateInstruction,
    }));
  if (instruction === undefined) return undefined; // the user pressed Escape
  const problem = validateInstruction(instruction);
  if (problem) {
    await vscodeapi.showErrorMessage(`Delegation: ${problem}`);
    return undefined;
  }
  const args: DelegateArguments = {
    uri: editor.document.uri.toString(),
    range: selectionRange(editor),
    instruction: instruction.trim(),
    agents: options.agents,
  };
  const result = await server.execute(ServerCommand.delegate, [args]);
  const taskId = taskIdOf(result);
  if (!taskId) {
    log.error(`delegation.delegate returned no taskId: ${JSON.stringify(result)}`);
    await vscodeapi.showErrorMessage("Delegation: the server did not accept the task (see the output).");
    return undefined;
  }
  log.info(`delegated "${args.instruction}" on ${args.uri} as task ${taskId}`);
  return taskId;
}

/** A task id from the command's argument (a string or `{taskId}`), else from a pick list. */
export async function chooseTask(
  board: TaskBoard,
  states: readonly TaskState[],
  verb: string,
  arg?: unknown,
): Promise<string | undefined> {
  if (typeof arg === "string" && arg) return arg;
  const fromObject = taskIdOf(arg);
  if (fromObject) return fromObject;
  const candidates = board.list(states);
  if (candidates.length === 0) {
    return vscodeapi.showInputBox({ title: `${verb} task`, prompt: "Task id", validateInput: (v) => (v.trim() ? undefined : "Type a task id.") });
  }
  const picked = await vscodeapi.showQuickPick(
    candidates.map((t) => ({
      label: t.taskId,
      description: t.state,
      detail: [t.kind, t.files.join(", "), t.message].filter(Boolean).join(" — "),
    })),
    { title: `${verb} which task?` },
  );
  return picked?.label;
}

export type TaskVerb = "cancel" | "accept" | "reject";

const VERB_COMMAND: Record<TaskVerb, string> = {
  cancel: ServerCommand.cancel,
  accept: ServerCommand.accept,
  reject: ServerCommand.reject,
};
const VERB_STATES: Record<TaskVerb, readonly TaskState[]> = {
  cancel: ACTIVE_STATES,
  accept: REVIEW_STATES,
  reject: REVIEW_STATES,
};

export async function sendTaskVerb(
  server: ServerCommands,
  board: TaskBoard,
  log: LogOutputChannel,
  verb: TaskVerb,
  arg?: unknown,
): Promise<unknown> {
  const taskId = await chooseTask(board, VERB_STATES[verb], verb[0].toUpperCase() + verb.slice(1), arg);
  if (!taskId) return undefined;
  const result = await server.execute(VERB_COMMAND[verb], [{ taskId }]);
  log.info(`${verb} task ${taskId}: ${JSON.stringify(result)}`);
  return result;
}

export async function showStatus(server: ServerCommands, log: LogOutputChannel): Promise<unknown> {
  const status = await server.execute(ServerCommand.status, []);
  log.info(`status:\n${JSON.stringify(status, null, 2)}`);
  log.show(true);
  return status;
}
