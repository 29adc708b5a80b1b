// Activation: creates the output channel and status bar, registers the commands, starts the
// server and restarts it when `delegation.server.*` changes. Other settings are pushed live.
import * as fs from "node:fs";
import * as os from "node:os";
import type { ExtensionContext, LogOutputChannel } from "vscode";
import { delegateSelection, type ServerCommands, sendTaskVerb, showStatus } from "./common/commands";
import { createTaskUpdateListener } from "./common/notifications";
import { EXTENSION_NAME, ExtensionCommand, PRE_TASK_SCHEME, REVIEW_VIEW, SETTINGS_SECTION } from "./common/constants";
import { ReviewTree } from "./common/review";
import { decideHunk, preTaskContent, ReviewProvider, showHunkDiff } from "./common/reviewView";
import { type ServerHandle, startServer } from "./common/server";
import { describeServerCommand, resolveServerCommand, serverCommandProblem } from "./common/serverCommand";
import { type ExtensionSettings, RESTART_SETTINGS, readSettings, settingsProblems } from "./common/settings";
import { TaskBoard } from "./common/tasks";
import * as vscodeapi from "./common/vscodeapi";

let server: ServerHandle | undefined;
let restarting: Promise<void> = Promise.resolve();

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The current settings; `report` shows their problems (done once per start or change). */
function currentSettings(log: LogOutputChannel, report: boolean): ExtensionSettings {
  const config = vscodeapi.getConfiguration(SETTINGS_SECTION);
  const settings = readSettings(config);
  if (!report) return settings;
  for (const problem of settingsProblems(settings, config)) {
    log.warn(problem);
    void vscodeapi.showWarningMessage(`${EXTENSION_NAME}: ${problem}`);
  }
  return settings;
}

async function restartServer(
  log: LogOutputChannel,
  onTaskUpdated: (params: unknown) => void,
): Promise<void> {
  if (server) {
    const old = server;
    server = undefined;
    await old.stop().catch((error: unknown) => log.warn(`stopping the server: ${String(error)}`));
  }
  const settings = currentSettings(log, true);
  await vscodeapi.setContext("delegation.languages", settings.languages);
  const roots = vscodeapi.getWorkspaceFolders().map((folder) => folder.uri.fsPath);
  const host = { workspaceRoots: roots, env: process.env, platform: process.platform, homeDir: os.homedir(), isExecutableFile };
  const resolved = resolveServerCommand(settings, host);
  const reportStartFailure = (why: string) => {
    const message =
      `could not start ${describeServerCommand(resolved)}: ${why}. ` +
      "Set delegation.server.command or delegation.server.pythonPath to an environment " +
      "where `pip install delegation-machine` has run.";
    log.error(message);
    void vscodeapi.showErrorMessage(`${EXTENSION_NAME}: ${message}`);
  };
  const problem = serverCommandProblem(resolved, host);
  if (problem) {
    reportStartFailure(problem);
    return;
  }
  log.info(`starting ${describeServerCommand(resolved)}`);
  try {
    server = await startServer(resolved, roots[0], settings, log, onTaskUpdated);
  } catch (error) {
    reportStartFailure(String(error));
  }
}

export async function activate(context: ExtensionContext): Promise<void> {
  const log = vscodeapi.createOutputChannel(EXTENSION_NAME);
  const statusBar = vscodeapi.createStatusBarItem("delegation.status", 100);
  statusBar.text = "$(hubot) Delegation";
  statusBar.command = ExtensionCommand.showStatus;
  statusBar.show();
  const board = new TaskBoard();

  const commands: ServerCommands = {
    execute: async (command, args) => {
      await restarting;
      if (!server) throw new Error(`${EXTENSION_NAME}: the server is not running; see the output channel.`);
      return server.execute(command, args);
    },
  };
  const review = new ReviewProvider(new ReviewTree(board), commands, log, ExtensionCommand.showHunkDiff);
  const refreshReview = () => void review.refresh();
  const listener = createTaskUpdateListener(board, statusBar, log, commands);
  const onTaskUpdated = (params: unknown) => {
    const prompt = listener(params);
    refreshReview(); // a finished task brings hunks to review, a settled one takes them away
    return prompt;
  };
  const afterwards = <T>(work: Promise<T>): Promise<T> => work.finally(refreshReview);
  const restart = (): Promise<void> => {
    restarting = restarting.then(() => restartServer(log, onTaskUpdated));
    return restarting;
  };

  context.subscriptions.push(
    log,
    statusBar,
    vscodeapi.registerCommand(ExtensionCommand.delegateSelection, (instruction?: unknown) =>
      delegateSelection(commands, log, {
        agents: currentSettings(log, false).agents,
        instruction: typeof instruction === "string" ? instruction : undefined,
      }),
    ),
    vscodeapi.registerCommand(ExtensionCommand.cancelTask, (arg?: unknown) => sendTaskVerb(commands, board, log, "cancel", arg)),
    vscodeapi.registerCommand(ExtensionCommand.acceptTask, (arg?: unknown) =>
      afterwards(sendTaskVerb(commands, board, log, "accept", arg)),
    ),
    vscodeapi.registerCommand(ExtensionCommand.rejectTask, (arg?: unknown) =>
      afterwards(sendTaskVerb(commands, board, log, "reject", arg)),
    ),
    vscodeapi.registerTreeDataProvider(REVIEW_VIEW, review),
    vscodeapi.registerTextDocumentContentProvider(PRE_TASK_SCHEME, {
      provideTextDocumentContent: (uri) => preTaskContent(review.tree, uri.toString()),
    }),
    vscodeapi.registerCommand(ExtensionCommand.refreshReview, () => review.refresh()),
    vscodeapi.registerCommand(ExtensionCommand.acceptHunk, (arg?: unknown) => afterwards(decideHunk(commands, log, "accept", arg))),
    vscodeapi.registerCommand(ExtensionCommand.rejectHunk, (arg?: unknown) => afterwards(decideHunk(commands, log, "reject", arg))),
    vscodeapi.registerCommand(ExtensionCommand.showHunkDiff, (node?: unknown) => showHunkDiff(node as never)),
    vscodeapi.registerCommand(ExtensionCommand.showStatus, () => showStatus(commands, log)),
    vscodeapi.registerCommand(ExtensionCommand.restartServer, restart),
    vscodeapi.onDidChangeConfiguration(async (event) => {
      if (RESTART_SETTINGS.some((section) => event.affectsConfiguration(section))) {
        await restart();
      } else if (event.affectsConfiguration(SETTINGS_SECTION) && server) {
        await server.pushSettings(currentSettings(log, true));
      }
    }),
    { dispose: () => void server?.stop() },
  );
  await restart();
}

export async function deactivate(): Promise<void> {
  await restarting;
  const running = server;
  server = undefined;
  await running?.stop();
}
