// Creates, starts and stops the LanguageClient that runs `delegation-machine serve` over stdio.
// Owns the one client instance; extension.ts asks for a restart, never touches it directly.
import type { LogOutputChannel } from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  RevealOutputChannelOn,
  type ServerOptions,
  Trace,
  TransportKind,
} from "vscode-languageclient/node";
import { CLIENT_ID, EXTENSION_NAME, TASK_UPDATED_NOTIFICATION } from "./constants";
import type { ServerCommand } from "./serverCommand";
import { type ExtensionSettings, serverSettingsPayload } from "./settings";

export interface ServerHandle {
  client: LanguageClient;
  execute(command: string, args: unknown[]): Promise<unknown>;
  pushSettings(settings: ExtensionSettings): Promise<void>;
  stop(): Promise<void>;
}

export function clientOptions(
  settings: ExtensionSettings,
  output: LogOutputChannel,
): LanguageClientOptions {
  return {
    documentSelector: settings.languages.map((language) => ({ scheme: "file", language })),
    outputChannel: output,
    traceOutputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    initializationOptions: serverSettingsPayload(settings),
  };
}

export async function startServer(
  resolved: ServerCommand,
  cwd: string | undefined,
  settings: ExtensionSettings,
  output: LogOutputChannel,
  onTaskUpdated: (params: unknown) => void,
): Promise<ServerHandle> {
  const serverOptions: ServerOptions = {
    command: resolved.command,
    args: resolved.args,
    transport: TransportKind.stdio,
    options: { cwd, env: { ...process.env } },
  };
  const client = new LanguageClient(CLIENT_ID, EXTENSION_NAME, serverOptions, clientOptions(settings, output));
  client.onNotification(TASK_UPDATED_NOTIFICATION, onTaskUpdated);
  await client.start();
  await client.setTrace(Trace.fromString(settings.trace));
  return {
    client,
    execute: (command, args) => client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }),
    pushSettings: (next) =>
      client.sendNotification(DidChangeConfigurationNotification.type, { settings: serverSettingsPayload(next) }),
    stop: () => client.stop(),
  };
}
