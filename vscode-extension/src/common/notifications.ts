// Turns `delegation/taskUpdated` notifications into the status bar, the output channel and,
// once a task's checks are done, an Accept/Reject prompt.
import type { LogOutputChannel, StatusBarItem } from "vscode";
import { type ServerCommands, sendTaskVerb } from "./commands";
import { describeTask, parseTaskUpdate, REVIEW_STATES, type TaskBoard, type TaskUpdate } from "./tasks";
import * as vscodeapi from "./vscodeapi";

/** Asks the user to accept or reject a task whose checks are done; sends the answer. */
export async function promptForReview(
  update: TaskUpdate,
  board: TaskBoard,
  log: LogOutputChannel,
  commands: ServerCommands,
): Promise<unknown> {
  const show = update.state === "verified" ? vscodeapi.showInformationMessage : vscodeapi.showWarningMessage;
  const choice = await show(`Delegation: ${describeTask(update)}`, "Accept", "Reject");
  if (choice !== "Accept" && choice !== "Reject") return undefined;
  return sendTaskVerb(commands, board, log, choice === "Accept" ? "accept" : "reject", update.taskId);
}

/** The `delegation/taskUpdated` handler. Returns the review prompt when one was opened. */
export function createTaskUpdateListener(
  board: TaskBoard,
  statusBar: StatusBarItem,
  log: LogOutputChannel,
  commands: ServerCommands,
): (params: unknown) => Promise<unknown> | undefined {
  return (params) => {
    let update: TaskUpdate;
    try {
      update = parseTaskUpdate(params);
    } catch (error) {
      log.error(`ignored a malformed delegation/taskUpdated: ${String(error)}`);
      return undefined;
    }
    const previous = board.record(update);
    const status = board.statusText();
    statusBar.text = status.text;
    statusBar.tooltip = status.tooltip;
    log.info(describeTask(update));
    const enteredReview = previous !== update.state && REVIEW_STATES.includes(update.state);
    return enteredReview ? promptForReview(update, board, log, commands) : undefined;
  };
}
