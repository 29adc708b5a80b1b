// Names shared by package.json, the extension and the server's LSP contract (DESIGN.md §4).

export const EXTENSION_NAME = "Delegation Machine";
export const CLIENT_ID = "delegation";
export const SETTINGS_SECTION = "delegation";

/** Commands this extension contributes. They must differ from the server's command ids:
 * vscode-languageclient registers every id in `executeCommandProvider.commands` itself. */
export const ExtensionCommand = {
  delegateSelection: "delegation.delegateSelection",
  cancelTask: "delegation.cancelTask",
  acceptTask: "delegation.acceptTask",
  rejectTask: "delegation.rejectTask",
  showStatus: "delegation.showStatus",
  restartServer: "delegation.restartServer",
  refreshReview: "delegation.review.refresh",
  acceptHunk: "delegation.review.acceptHunk",
  rejectHunk: "delegation.review.rejectHunk",
  showHunkDiff: "delegation.review.showDiff",
} as const;

/** The review view (package.json `contributes.views`) and its virtual pre-task documents. */
export const REVIEW_VIEW = "delegation.review";
export const PRE_TASK_SCHEME = "delegation-pretask";

/** `workspace/executeCommand` ids the server implements. */
export const ServerCommand = {
  delegate: "delegation.delegate",
  cancel: "delegation.cancel",
  accept: "delegation.accept",
  reject: "delegation.reject",
  status: "delegation.status",
  acceptHunk: "delegation.acceptHunk",
  rejectHunk: "delegation.rejectHunk",
  hunks: "delegation.hunks",
} as const;

export const TASK_UPDATED_NOTIFICATION = "delegation/taskUpdated";
