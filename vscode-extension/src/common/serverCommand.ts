// Decides which process to start as the language server (decision record 071).
// Order: delegation.server.command > delegation.server.pythonPath > <workspace>/.venv's
// console script > `delegation-machine` on PATH > `python3 -m delegation_machine.server serve`.
// Pure: the file system and environment are passed in, so every branch is unit-tested.
import * as path from "node:path";
import type { ExtensionSettings } from "./settings";

export type ServerCommandSource =
  | "setting:server.command"
  | "setting:server.pythonPath"
  | "workspace-venv"
  | "path"
  | "fallback";

export interface ServerCommand {
  command: string;
  args: string[];
  source: ServerCommandSource;
}

export interface HostEnvironment {
  workspaceRoots: string[];
  env: Record<string, string | undefined>;
  platform: NodeJS.Platform;
  homeDir: string;
  isExecutableFile: (file: string) => boolean;
}

const SCRIPT = "delegation-machine";
const MODULE_ARGS = ["-m", "delegation_machine.server", "serve"];

/** Expand `${workspaceFolder}`, `${userHome}` and `${env:NAME}` like VS Code's own settings. */
export function expandVariables(value: string, host: HostEnvironment): string {
  return value
    .replace(/\$\{workspaceFolder\}/g, host.workspaceRoots[0] ?? "")
    .replace(/\$\{userHome\}/g, host.homeDir)
    .replace(/\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => host.env[name] ?? "");
}

function venvScript(root: string, platform: NodeJS.Platform): string {
  return platform === "win32"
    ? path.join(root, ".venv", "Scripts", `${SCRIPT}.exe`)
    : path.join(root, ".venv", "bin", SCRIPT);
}

function findOnPath(host: HostEnvironment, program = SCRIPT): string | undefined {
  const separator = host.platform === "win32" ? ";" : ":";
  const names = host.platform === "win32" ? [`${program}.exe`, `${program}.cmd`, program] : [program];
  for (const dir of (host.env.PATH ?? "").split(separator).filter(Boolean)) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      if (host.isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

export function resolveServerCommand(
  settings: ExtensionSettings,
  host: HostEnvironment,
): ServerCommand {
  const extra = settings.serverArgs.map((arg) => expandVariables(arg, host));
  const explicit = settings.serverCommand.map((part) => expandVariables(part, host));
  if (explicit.length > 0 && explicit[0]) {
    return { command: explicit[0], args: [...explicit.slice(1), ...extra], source: "setting:server.command" };
  }
  if (settings.pythonPath) {
    const python = expandVariables(settings.pythonPath, host);
    return { command: python, args: [...MODULE_ARGS, ...extra], source: "setting:server.pythonPath" };
  }
  for (const root of host.workspaceRoots) {
    const script = venvScript(root, host.platform);
    if (host.isExecutableFile(script)) {
      return { command: script, args: ["serve", ...extra], source: "workspace-venv" };
    }
  }
  const onPath = findOnPath(host);
  if (onPath) return { command: onPath, args: ["serve", ...extra], source: "path" };
  const python = host.platform === "win32" ? "python" : "python3";
  return { command: python, args: [...MODULE_ARGS, ...extra], source: "fallback" };
}

/** Why `resolved` cannot start (a path that is not an executable file, a program not on
 * PATH), checked before starting so the user gets one precise message; undefined if fine. */
export function serverCommandProblem(resolved: ServerCommand, host: HostEnvironment): string | undefined {
  const { command } = resolved;
  const isPath = command.includes("/") || command.includes("\\");
  if (isPath) return host.isExecutableFile(command) ? undefined : `${command} is not an executable file`;
  return findOnPath(host, command) ? undefined : `${command} is not on PATH`;
}

export function describeServerCommand(resolved: ServerCommand): string {
  const quoted = [resolved.command, ...resolved.args].map((p) => (/\s/.test(p) ? `"${p}"` : p));
  return `${quoted.join(" ")} (from ${resolved.source})`;
}
