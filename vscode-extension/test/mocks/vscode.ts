// A fake of the `vscode` APIs the extension calls (through src/common/vscodeapi.ts).
// Tests set the answers (input box, quick pick, configuration, active editor) and read back
// what the extension did (registered commands, messages shown, context keys set).
// What vscode-languageclient needs beyond that is an inert auto-stub (see `inert` below),
// so the real LanguageClient can run against the real server in the activation test.
import { fileURLToPath, pathToFileURL } from "node:url";

export type Answer<T> = T | ((...args: any[]) => T);

interface Recorded {
  messages: { level: "info" | "warning" | "error"; text: string; actions: string[] }[];
  inputBoxes: any[];
  quickPicks: { items: any[]; options: any }[];
  contexts: Record<string, unknown>;
  logs: { level: string; text: string }[];
}

export const recorded: Recorded = { messages: [], inputBoxes: [], quickPicks: [], contexts: {}, logs: [] };
export const registeredCommands = new Map<string, (...args: any[]) => unknown>();
export const answers: {
  inputBox: Answer<string | undefined>;
  quickPick: Answer<any>;
  message: Answer<string | undefined>;
} = { inputBox: undefined, quickPick: undefined, message: undefined };
export let configuration: Record<string, unknown> = {};
export const configListeners: ((event: any) => unknown)[] = [];

function answer<T>(value: Answer<T>, ...args: any[]): T {
  return typeof value === "function" ? (value as (...a: any[]) => T)(...args) : value;
}

export function resetFake(): void {
  recorded.messages.length = 0;
  recorded.inputBoxes.length = 0;
  recorded.quickPicks.length = 0;
  recorded.logs.length = 0;
  for (const key of Object.keys(recorded.contexts)) delete recorded.contexts[key];
  registeredCommands.clear();
  configListeners.length = 0;
  answers.inputBox = undefined;
  answers.quickPick = undefined;
  answers.message = undefined;
  configuration = {};
  window.activeTextEditor = undefined;
  workspace.workspaceFolders = undefined;
}

export function setConfiguration(values: Record<string, unknown>): void {
  configuration = values;
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export class Uri {
  private constructor(private readonly url: URL) {}
  static file(fsPath: string): Uri {
    return new Uri(pathToFileURL(fsPath));
  }
  static parse(value: string): Uri {
    return new Uri(new URL(value));
  }
  get scheme(): string {
    return this.url.protocol.replace(/:$/, "");
  }
  get fsPath(): string {
    return this.scheme === "file" ? fileURLToPath(this.url) : this.url.pathname;
  }
  get path(): string {
    return this.url.pathname;
  }
  toString(): string {
    return this.url.href;
  }
  toJSON(): string {
    return this.url.href;
  }
}

/** Listeners for everything recorded, so tests can wait for a message or log line. */
export const recordedEvents = new EventTarget();

function notifyRecorded(kind: string): void {
  recordedEvents.dispatchEvent(new Event(kind));
}

/** Resolves when `condition()` holds, re-checked whenever the fake records something. */
export function whenRecorded<T>(what: string, condition: () => T | undefined | false, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const value = condition();
      if (!value) return false;
      for (const kind of ["message", "log", "status"]) recordedEvents.removeEventListener(kind, check);
      clearTimeout(timer);
      resolve(value);
      return true;
    };
    const timer = setTimeout(() => {
      for (const kind of ["message", "log", "status"]) recordedEvents.removeEventListener(kind, check);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; logs:\n${recorded.logs.map((l) => `${l.level}: ${l.text}`).join("\n").slice(-4000)}`));
    }, timeoutMs);
    for (const kind of ["message", "log", "status"]) recordedEvents.addEventListener(kind, check);
    check();
  });
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

export class Selection {
  readonly start: Position;
  readonly end: Position;
  constructor(anchor: Position, active: Position) {
    const anchorFirst = anchor.line < active.line || (anchor.line === active.line && anchor.character <= active.character);
    this.start = anchorFirst ? anchor : active;
    this.end = anchorFirst ? active : anchor;
  }
  get isEmpty(): boolean {
    return this.start.line === this.end.line && this.start.character === this.end.character;
  }
}

/** A text editor over `text` with the given selection (line/character pairs). */
export function fakeEditor(path: string, text: string, from: [number, number], to: [number, number]): any {
  const lines = text.split("\n");
  return {
    selection: new Selection(new Position(...from), new Position(...to)),
    document: {
      uri: Uri.file(path),
      languageId: "python",
      lineCount: lines.length,
      lineAt: (line: number) => ({ lineNumber: line, text: lines[line] }),
      getText: () => text,
    },
  };
}

function fakeOutputChannel(name: string): any {
  const log = (level: string) => (text: string) => {
    recorded.logs.push({ level, text });
    notifyRecorded("log");
  };
  return {
    name,
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    debug: log("debug"),
    trace: log("trace"),
    appendLine: log("line"),
    append: log("append"),
    replace: log("replace"),
    clear: () => undefined,
    hide: () => undefined,
    logLevel: 2,
    onDidChangeLogLevel: () => new Disposable(),
    show: () => undefined,
    dispose: () => undefined,
  };
}

export const window = {
  activeTextEditor: undefined as any,
  createOutputChannel: (name: string) => fakeOutputChannel(name),
  createStatusBarItem: (id: string, alignment: StatusBarAlignment, priority: number) => ({
    id,
    alignment,
    priority,
    _text: "",
    get text() {
      return this._text;
    },
    set text(value: string) {
      this._text = value;
      notifyRecorded("status");
    },
    tooltip: "",
    command: undefined as string | undefined,
    visible: false,
    show() {
      this.visible = true;
    },
    hide() {
      this.visible = false;
    },
    dispose: () => undefined,
  }),
  showInputBox: async (options: any) => {
    recorded.inputBoxes.push(options);
    return answer(answers.inputBox, options);
  },
  showQuickPick: async (items: any[], options: any) => {
    recorded.quickPicks.push({ items, options });
    return answer(answers.quickPick, items, options);
  },
  showInformationMessage: async (text: string, ...actions: string[]) => {
    recorded.messages.push({ level: "info", text, actions });
    notifyRecorded("message");
    return answer(answers.message, text, actions);
  },
  showWarningMessage: async (text: string, ...actions: string[]) => {
    recorded.messages.push({ level: "warning", text, actions });
    notifyRecorded("message");
    return answer(answers.message, text, actions);
  },
  showErrorMessage: async (text: string, ...actions: string[]) => {
    recorded.messages.push({ level: "error", text, actions });
    notifyRecorded("message");
    return answer(answers.message, text, actions);
  },
};

export const workspace = {
  workspaceFolders: undefined as { uri: Uri; name: string; index: number }[] | undefined,
  getConfiguration: (section: string) => ({
    get: <T>(key: string, fallback?: T): T | undefined => {
      const full = `${section}.${key}`;
      return full in configuration ? (configuration[full] as T) : fallback;
    },
  }),
  onDidChangeConfiguration: (listener: (event: any) => unknown) => {
    configListeners.push(listener);
    return { dispose: () => configListeners.splice(configListeners.indexOf(listener), 1) };
  },
};

export const commands = {
  registerCommand: (id: string, callback: (...args: any[]) => unknown) => {
    if (registeredCommands.has(id)) throw new Error(`command '${id}' already exists`);
    registeredCommands.set(id, callback);
    return { dispose: () => registeredCommands.delete(id) };
  },
  executeCommand: async (id: string, ...args: any[]) => {
    if (id === "setContext") {
      recorded.contexts[args[0]] = args[1];
      return undefined;
    }
    const command = registeredCommands.get(id);
    if (!command) throw new Error(`command '${id}' not found`);
    return command(...args);
  },
};

// --- what vscode-languageclient needs to run ------------------------------------------------

export const version = "1.82.0";

export class Disposable {
  constructor(private readonly onDispose: () => unknown = () => undefined) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((item) => item.dispose()));
  }
  dispose(): void {
    this.onDispose();
  }
}

export class EventEmitter<T> {
  private listeners: ((value: T) => unknown)[] = [];
  readonly event = (listener: (value: T) => unknown) => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(value: T): void {
    for (const listener of [...this.listeners]) listener(value);
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class CancellationTokenSource {
  private readonly emitter = new EventEmitter<void>();
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

export class CancellationError extends Error {}

/** An inert stand-in for any other API: callable, constructible, iterable (empty), never a
 * thenable, and every property is another inert stand-in. Calls return disposables. */
function inert(name: string): any {
  const target = function inertStub() {
    return undefined;
  };
  return new Proxy(target, {
    get(base, property) {
      if (property === "then") return undefined;
      if (property === "prototype") return base.prototype;
      if (property === Symbol.iterator) return function* empty() {};
      if (property === Symbol.toPrimitive || property === "toString") return () => name;
      if (property === "dispose") return () => undefined;
      if (property === "length") return 0;
      if (typeof property === "symbol") return undefined;
      return inert(`${name}.${property}`);
    },
    apply: () => inert(`${name}()`),
    construct: () => inert(`new ${name}`),
  });
}

function withInertFallback<T extends object>(name: string, real: T): T {
  return new Proxy(real, {
    get: (base, property) =>
      property in base || typeof property === "symbol" ? (base as any)[property] : inert(`${name}.${String(property)}`),
  });
}

export const languages = withInertFallback("languages", {
  match: () => 0,
});
export const env = withInertFallback("env", { appName: "fake-vscode", language: "en", machineId: "test" });
export const extensions = withInertFallback("extensions", { all: [] as unknown[], getExtension: () => undefined });

Object.assign(workspace, { textDocuments: [] as unknown[], getWorkspaceFolder: () => undefined });

/** The module object tests and the extension `require("vscode")` for. */
export function fakeModule(exports: Record<string, unknown>): unknown {
  for (const key of ["window", "workspace", "commands"]) exports[key] = withInertFallback(key, exports[key] as object);
  return withInertFallback("vscode", exports);
}
