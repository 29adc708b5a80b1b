// The review view's behaviour: refresh the tree from `delegation.hunks`, accept or reject one
// hunk, and open a diff of a file against its pre-task text (a virtual document served under
// the `delegation-pretask` scheme). The server connection is passed in, as for the commands.
import type { LogOutputChannel } from "vscode";
import type { ServerCommands } from "./commands";
import { PRE_TASK_SCHEME, ServerCommand } from "./constants";
import { parseHunks, preTaskText, type ReviewNode, type ReviewTree } from "./review";
import * as vscodeapi from "./vscodeapi";

export type HunkVerb = "accept" | "reject";

/** Ask the server for every pending hunk and put them in the tree. */
export async function refreshReview(server: ServerCommands, tree: ReviewTree, log: LogOutputChannel): Promise<void> {
  try {
    tree.update(parseHunks(await server.execute(ServerCommand.hunks, [{}])));
  } catch (error) {
    log.warn(`could not list the pending hunks: ${String(error)}`);
  }
}

function hunkOf(arg: unknown): { taskId: string; hunkId: string } | undefined {
  const node = arg as { taskId?: unknown; hunkId?: unknown } | null;
  if (node && typeof node.taskId === "string" && typeof node.hunkId === "string") {
    return { taskId: node.taskId, hunkId: node.hunkId };
  }
  return undefined;
}

/** Accept or reject the hunk of a tree node (or of `{taskId, hunkId}`). */
export async function decideHunk(
  server: ServerCommands,
  log: LogOutputChannel,
  verb: HunkVerb,
  arg: unknown,
): Promise<unknown> {
  const hunk = hunkOf(arg);
  if (!hunk) {
    await vscodeapi.showErrorMessage("Delegation: pick a hunk in the Delegation review view.");
    return undefined;
  }
  const command = verb === "accept" ? ServerCommand.acceptHunk : ServerCommand.rejectHunk;
  const result = await server.execute(command, [hunk]);
  log.info(`${verb} hunk ${hunk.hunkId} of task ${hunk.taskId}: ${JSON.stringify(result)}`);
  return result;
}

/** The virtual document URI that shows `uri` before `taskId`. */
export function preTaskUri(taskId: string, uri: string): string {
  return `${PRE_TASK_SCHEME}:${encodeURIComponent(uri)}?task=${encodeURIComponent(taskId)}`;
}

/** The content of a pre-task virtual document: the file's text with the task's hunks rejected. */
export async function preTaskContent(tree: ReviewTree, virtualUri: string): Promise<string> {
  const match = /^[^:]+:([^?]*)\?task=(.*)$/.exec(virtualUri);
  if (!match) throw new Error(`not a pre-task document: ${virtualUri}`);
  const uri = decodeURIComponent(match[1]);
  const taskId = decodeURIComponent(match[2]);
  return preTaskText(await vscodeapi.documentText(uri), tree.hunksOf(taskId, uri));
}

/** Open the diff of a file (or a hunk's file) against its text before the task. */
export async function showHunkDiff(node: ReviewNode | undefined): Promise<unknown> {
  if (!node || node.kind === "task") return undefined;
  const name = node.uri.slice(node.uri.lastIndexOf("/") + 1);
  return vscodeapi.showDiff(preTaskUri(node.taskId, node.uri), node.uri, `${name}: before ${node.taskId} ↔ now`);
}

type Listener = (node: ReviewNode | undefined) => unknown;

/** The TreeDataProvider of the review view: nodes from the ReviewTree, refreshed on demand. */
export class ReviewProvider {
  private listeners: Listener[] = [];

  constructor(
    readonly tree: ReviewTree,
    private readonly server: ServerCommands,
    private readonly log: LogOutputChannel,
    private readonly diffCommand: string,
  ) {}

  readonly onDidChangeTreeData = (listener: Listener) => {
    this.listeners.push(listener);
    return { dispose: () => void (this.listeners = this.listeners.filter((l) => l !== listener)) };
  };

  getChildren(node?: ReviewNode): ReviewNode[] {
    return this.tree.children(node);
  }

  getTreeItem(node: ReviewNode) {
    return this.tree.item(node, this.diffCommand);
  }

  /** Re-read the pending hunks and redraw the view. */
  async refresh(): Promise<void> {
    await refreshReview(this.server, this.tree, this.log);
    for (const listener of [...this.listeners]) listener(undefined);
  }
}
