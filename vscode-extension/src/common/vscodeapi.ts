// Every call into the `vscode` module goes through this file, so unit tests can replace the
// module with a fake (test/mocks/vscode.ts) and the rest of the extension stays plain logic.
import {
  commands,
  type ConfigurationChangeEvent,
  type Disposable,
  type InputBoxOptions,
  type LogOutputChannel,
  type QuickPickItem,
  type QuickPickOptions,
  StatusBarAlignment,
  type StatusBarItem,
  type TextDocumentContentProvider,
  type TextEditor,
  type TreeDataProvider,
  Uri,
  window,
  workspace,
  type WorkspaceConfiguration,
  type WorkspaceFolder,
} from "vscode";

export function createOutputChannel(name: string): LogOutputChannel {
  return window.createOutputChannel(name, { log: true });
}

export function createStatusBarItem(id: string, priority: number): StatusBarItem {
  return window.createStatusBarItem(id, StatusBarAlignment.Left, priority);
}

export function getConfiguration(section: string, scope?: WorkspaceFolder): WorkspaceConfiguration {
  return workspace.getConfiguration(section, scope?.uri);
}

export function onDidChangeConfiguration(
  listener: (event: ConfigurationChangeEvent) => unknown,
): Disposable {
  return workspace.onDidChangeConfiguration(listener);
}

export function getWorkspaceFolders(): readonly WorkspaceFolder[] {
  return workspace.workspaceFolders ?? [];
}

export function getActiveTextEditor(): TextEditor | undefined {
  return window.activeTextEditor;
}

export function registerCommand(
  command: string,
  callback: (...args: any[]) => unknown,
  thisArg?: unknown,
): Disposable {
  return commands.registerCommand(command, callback, thisArg);
}

export function setContext(key: string, value: unknown): Thenable<unknown> {
  return commands.executeCommand("setContext", key, value);
}

export function showInputBox(options: InputBoxOptions): Thenable<string | undefined> {
  return window.showInputBox(options);
}

export function showQuickPick<T extends QuickPickItem>(
  items: readonly T[],
  options: QuickPickOptions,
): Thenable<T | undefined> {
  return window.showQuickPick(items, options);
}

export function showInformationMessage(
  message: string,
  ...actions: string[]
): Thenable<string | undefined> {
  return window.showInformationMessage(message, ...actions);
}

export function showWarningMessage(
  message: string,
  ...actions: string[]
): Thenable<string | undefined> {
  return window.showWarningMessage(message, ...actions);
}

export function showErrorMessage(message: string, ...actions: string[]): Thenable<string | undefined> {
  return window.showErrorMessage(message, ...actions);
}

export function registerTreeDataProvider<T>(viewId: string, provider: TreeDataProvider<T>): Disposable {
  return window.registerTreeDataProvider(viewId, provider);
}

export function registerTextDocumentContentProvider(
  scheme: string,
  provider: TextDocumentContentProvider,
): Disposable {
  return workspace.registerTextDocumentContentProvider(scheme, provider);
}

/** The text of the open document at `uri` (opened if need be). */
export async function documentText(uri: string): Promise<string> {
  const document = await workspace.openTextDocument(Uri.parse(uri));
  return document.getText();
}

/** vscode.diff between a virtual `left` document and the file at `right`. */
export function showDiff(left: string, right: string, title: string): Thenable<unknown> {
  return commands.executeCommand("vscode.diff", Uri.parse(left), Uri.parse(right), title);
}
