// A minimal LSP client session for tests, built on Microsoft's vscode-languageserver-protocol:
// it starts the real server as a subprocess, keeps an in-memory copy of each open document,
// applies `workspace/applyEdit` to it (as an editor does) and lets a test wait, with a
// deadline, for any notification that satisfies a condition; nothing waits on a timer alone.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import {
  type ApplyWorkspaceEditParams,
  ApplyWorkspaceEditRequest,
  ConfigurationRequest,
  createProtocolConnection,
  type Diagnostic,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  InitializedNotification,
  InitializeRequest,
  type InitializeResult,
  LogMessageNotification,
  ExitNotification,
  type ProtocolConnection,
  PublishDiagnosticsNotification,
  type PublishDiagnosticsParams,
  RegistrationRequest,
  ShowMessageNotification,
  ShowMessageRequest,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  type TextDocumentContentChangeEvent,
  TextDocumentSyncKind,
  type TextEdit,
  UnregistrationRequest,
  WorkDoneProgressCreateRequest,
} from "vscode-languageserver-protocol/node";

export interface Observed {
  method: string;
  params: any;
  /** Position in the session's event log; `mark()` returns the next one. */
  seq: number;
  /** Milliseconds since the session started. */
  ms: number;
}

export interface OpenDocument {
  uri: string;
  version: number;
  text: string;
}

interface Waiter {
  description: string;
  matches: (event: Observed) => boolean;
  resolve: (event: Observed) => void;
  fail: (why: string) => void;
}

/** An error the server shows the user ends every wait at once: the happy path has none. */
function serverError(event: Observed): string | undefined {
  const shown = event.method === "window/showMessage" || event.method === "window/showMessageRequest";
  return shown && event.params?.type === 1 ? `the server reported an error: ${event.params.message}` : undefined;
}

/** Offset of an LSP position in `text` (UTF-16 code units, JavaScript's own string index). */
export function offsetAt(text: string, position: { line: number; character: number }): number {
  let offset = 0;
  for (let line = 0; line < position.line; line++) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  const lineEnd = text.indexOf("\n", offset);
  const end = lineEnd < 0 ? text.length : lineEnd;
  return Math.min(offset + position.character, end);
}

/** Apply edits that all refer to the original text (LSP TextEdit[] semantics). The returned
 * changes are ordered bottom-up, so sending them in that order as didChange is exact. */
export function applyTextEdits(text: string, edits: TextEdit[]): { text: string; changes: TextEdit[] } {
  const ordered = [...edits].sort((a, b) => offsetAt(text, b.range.start) - offsetAt(text, a.range.start));
  let result = text;
  for (const edit of ordered) {
    result = result.slice(0, offsetAt(result, edit.range.start)) + edit.newText + result.slice(offsetAt(result, edit.range.end));
  }
  return { text: result, changes: ordered };
}

export class LspSession {
  readonly observed: Observed[] = [];
  readonly documents = new Map<string, OpenDocument>();
  readonly diagnostics = new Map<string, Diagnostic[]>();
  readonly appliedEdits: { params: ApplyWorkspaceEditParams; applied: boolean; reason?: string }[] = [];
  stderr = "";
  private readonly startedAt = Date.now();
  private readonly waiters: Waiter[] = [];
  private readonly process: ChildProcessWithoutNullStreams;
  readonly connection: ProtocolConnection;
  private syncKind: TextDocumentSyncKind = TextDocumentSyncKind.Full;
  private exited: string | undefined;

  constructor(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) {
    this.process = spawn(command, args, { cwd, env, stdio: "pipe" });
    this.process.stderr.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString("utf8");
    });
    this.process.on("exit", (code, signal) => {
      this.exited = `server exited with code ${code} signal ${signal}`;
      this.observe("$/exit", { code, signal });
    });
    this.connection = createProtocolConnection(
      new StreamMessageReader(this.process.stdout),
      new StreamMessageWriter(this.process.stdin),
    );
    this.registerClientHandlers();
    this.connection.listen();
  }

  private observe(method: string, params: any): void {
    const event = { method, params, seq: this.observed.length, ms: Date.now() - this.startedAt };
    this.observed.push(event);
    const error = serverError(event);
    for (const waiter of [...this.waiters]) {
      if (error) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.fail(error);
        continue;
      }
      if (waiter.matches(event)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    }
  }

  private registerClientHandlers(): void {
    const c = this.connection;
    c.onNotification(PublishDiagnosticsNotification.type, (params: PublishDiagnosticsParams) => {
      this.diagnostics.set(params.uri, params.diagnostics);
      this.observe(PublishDiagnosticsNotification.method, params);
    });
    c.onNotification("delegation/taskUpdated", (params: any) => this.observe("delegation/taskUpdated", params));
    c.onNotification("$/progress", (params: any) => this.observe("$/progress", params));
    c.onNotification(LogMessageNotification.type, (params) => this.observe(LogMessageNotification.method, params));
    c.onNotification(ShowMessageNotification.type, (params) => this.observe(ShowMessageNotification.method, params));
    c.onRequest(ShowMessageRequest.type, (params) => {
      this.observe(ShowMessageRequest.method, params);
      return null;
    });
    c.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
      this.observe(WorkDoneProgressCreateRequest.method, params);
      return null;
    });
    c.onRequest(RegistrationRequest.type, () => null);
    c.onRequest(UnregistrationRequest.type, () => null);
    c.onRequest(ConfigurationRequest.type, (params) => params.items.map(() => null));
    c.onRequest(ApplyWorkspaceEditRequest.type, (params) => this.applyWorkspaceEdit(params));
  }

  /** What an editor does with `workspace/applyEdit`: check versions, edit, send didChange. */
  private applyWorkspaceEdit(params: ApplyWorkspaceEditParams) {
    const perDocument: { uri: string; version: number | null; edits: TextEdit[] }[] = [];
    for (const change of params.edit.documentChanges ?? []) {
      if (!("textDocument" in change)) {
        return this.refuseEdit(params, `resource operation ${JSON.stringify(change)} is not supported`);
      }
      perDocument.push({ uri: change.textDocument.uri, version: change.textDocument.version, edits: change.edits as TextEdit[] });
    }
    for (const [uri, edits] of Object.entries(params.edit.changes ?? {})) perDocument.push({ uri, version: null, edits });
    for (const { uri, version } of perDocument) {
      const document = this.documents.get(uri);
      if (!document) return this.refuseEdit(params, `${uri} is not open`);
      if (version !== null && version !== document.version) {
        return this.refuseEdit(params, `${uri} is at version ${document.version}, the edit is for ${version}`);
      }
    }
    for (const { uri, edits } of perDocument) {
      const document = this.documents.get(uri)!;
      const { text, changes } = applyTextEdits(document.text, edits);
      document.text = text;
      document.version += 1;
      const contentChanges: TextDocumentContentChangeEvent[] =
        this.syncKind === TextDocumentSyncKind.Incremental
          ? changes.map((edit) => ({ range: edit.range, text: edit.newText }))
          : [{ text }];
      void this.connection.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri, version: document.version },
        contentChanges,
      });
    }
    this.appliedEdits.push({ params, applied: true });
    this.observe(ApplyWorkspaceEditRequest.method, params);
    return { applied: true };
  }

  private refuseEdit(params: ApplyWorkspaceEditParams, reason: string) {
    this.appliedEdits.push({ params, applied: false, reason });
    this.observe(ApplyWorkspaceEditRequest.method, params);
    return { applied: false, failureReason: reason };
  }

  async initialize(rootUri: string, initializationOptions: unknown, timeoutMs: number): Promise<InitializeResult> {
    const result = await this.within("the initialize response", this.connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      clientInfo: { name: "delegation-protocol-test", version: "0.1.0" },
      rootUri,
      workspaceFolders: [{ uri: rootUri, name: "sample" }],
      initializationOptions,
      capabilities: {
        workspace: {
          applyEdit: true,
          workspaceEdit: { documentChanges: true, failureHandling: "abort" },
          configuration: true,
          executeCommand: { dynamicRegistration: false },
        },
        window: { workDoneProgress: true, showMessage: {} },
        textDocument: {
          synchronization: { didSave: true, dynamicRegistration: false },
          publishDiagnostics: { relatedInformation: true, versionSupport: true },
          codeAction: {
            codeActionLiteralSupport: {
              codeActionKind: { valueSet: ["", "quickfix", "refactor", "quickfix.delegate", "refactor.delegate"] },
            },
          },
        },
      },
    }), timeoutMs);
    const sync = result.capabilities.textDocumentSync;
    this.syncKind = (typeof sync === "number" ? sync : sync?.change) ?? TextDocumentSyncKind.None;
    await this.connection.sendNotification(InitializedNotification.type, {});
    return result;
  }

  async open(uri: string, text: string, languageId = "python"): Promise<OpenDocument> {
    const document = { uri, version: 1, text };
    this.documents.set(uri, document);
    await this.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri, languageId, version: 1, text },
    });
    return document;
  }

  /** The sequence number the next observed event will get. */
  mark(): number {
    return this.observed.length;
  }

  /** Resolves with the first event (already seen at or after `since`, or yet to come) that
   * matches; rejects at the deadline or when the server exits, with a transcript. */
  waitFor(description: string, matches: (event: Observed) => boolean, timeoutMs: number, since = 0): Promise<Observed> {
    const seen = this.observed.find((event) => event.seq >= since && matches(event));
    if (seen) return Promise.resolve(seen);
    const earlierError = this.observed.map(serverError).find((error) => error !== undefined);
    if (earlierError) return Promise.reject(new Error(`${earlierError} before ${description}\n${this.transcript()}`));
    return new Promise<Observed>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${description}\n${this.transcript()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        description,
        matches: (event) => matches(event) || (event.method === "$/exit" && this.exited !== undefined),
        resolve: (event) => {
          clearTimeout(timer);
          if (event.method === "$/exit") reject(new Error(`${this.exited} while waiting for ${description}\n${this.transcript()}`));
          else resolve(event);
        },
        fail: (why) => {
          clearTimeout(timer);
          reject(new Error(`${why} while waiting for ${description}\n${this.transcript()}`));
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** One line per event: when it came and what it was (for the test's diagnostics). */
  timeline(): string[] {
    return this.observed.map((e) => {
      const detail =
        e.method === "delegation/taskUpdated"
          ? `${e.params.taskId} ${e.params.state}`
          : e.method === "textDocument/publishDiagnostics"
            ? `${e.params.uri.split("/").pop()} ${e.params.diagnostics.map((d: Diagnostic) => d.code).join(",")}`
            : e.method === "$/progress"
              ? `${e.params.value?.kind} ${e.params.value?.message ?? ""}`
              : "";
      return `${String(e.ms).padStart(6)} ms ${e.method} ${detail}`;
    });
  }

  /** Settle `pending` (a request to the server) within the deadline, or fail with a
   * transcript when the deadline passes or the server exits first. */
  async within<T>(description: string, pending: Promise<T>, timeoutMs: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const exitOrDeadline = new Promise<never>((_, reject) => {
      const fail = (why: string) => reject(new Error(`${why} while waiting for ${description}\n${this.transcript()}`));
      timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      if (this.exited !== undefined) fail(this.exited);
      else this.process.once("exit", () => fail(this.exited ?? "server exited"));
    });
    try {
      return await Promise.race([pending, exitOrDeadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The last notifications and the server's stderr: what a failing test should print. */
  transcript(): string {
    const events = this.observed
      .slice(-25)
      .map((e) => `  ${e.ms} ms ${e.method} ${JSON.stringify(e.params).slice(0, 400)}`)
      .join("\n");
    return `last events:\n${events}\nserver stderr (tail):\n${this.stderr.slice(-3000)}`;
  }

  async shutdown(): Promise<void> {
    if (this.exited === undefined) {
      try {
        let deadline: NodeJS.Timeout | undefined;
        await Promise.race([
          this.connection.sendRequest(ShutdownRequest.type),
          new Promise((resolve) => {
            deadline = setTimeout(resolve, 5000);
          }),
        ]);
        clearTimeout(deadline);
        await this.connection.sendNotification(ExitNotification.type);
      } catch {
        // The server is gone already; killing it below is all that is left to do.
      }
    }
    this.connection.dispose();
    if (this.exited === undefined) this.process.kill();
  }
}
