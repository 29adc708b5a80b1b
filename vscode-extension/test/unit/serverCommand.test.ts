import * as assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";
import { describeServerCommand, type HostEnvironment, resolveServerCommand, serverCommandProblem } from "../../src/common/serverCommand";
import { type ExtensionSettings, readSettings } from "../../src/common/settings";

function settingsWith(values: Record<string, unknown>): ExtensionSettings {
  return readSettings({ get: (key: string, fallback?: unknown) => (key in values ? values[key] : fallback) } as any);
}

function host(executables: string[], overrides: Partial<HostEnvironment> = {}): HostEnvironment {
  return {
    workspaceRoots: ["/ws"],
    env: { PATH: "/usr/local/bin:/usr/bin", HOME: "/home/me" },
    platform: "linux",
    homeDir: "/home/me",
    isExecutableFile: (file) => executables.includes(file),
    ...overrides,
  };
}

test("server.command wins over everything, with variables expanded and args appended", () => {
  const resolved = resolveServerCommand(
    settingsWith({
      "server.command": ["${workspaceFolder}/.venv/bin/delegation-machine", "serve"],
      "server.pythonPath": "/usr/bin/python3",
      "server.args": ["--log-file", "${userHome}/dm.log"],
    }),
    host(["/ws/.venv/bin/delegation-machine"]),
  );
  assert.deepEqual(resolved, {
    command: "/ws/.venv/bin/delegation-machine",
    args: ["serve", "--log-file", "/home/me/dm.log"],
    source: "setting:server.command",
  });
});

test("pythonPath runs the server module", () => {
  const resolved = resolveServerCommand(settingsWith({ "server.pythonPath": "${env:HOME}/venv/bin/python" }), host([]));
  assert.deepEqual(resolved, {
    command: "/home/me/venv/bin/python",
    args: ["-m", "delegation_machine.server", "serve"],
    source: "setting:server.pythonPath",
  });
});

test("a workspace .venv console script is found before PATH", () => {
  const resolved = resolveServerCommand(
    settingsWith({}),
    host(["/ws/.venv/bin/delegation-machine", "/usr/bin/delegation-machine"]),
  );
  assert.equal(resolved.source, "workspace-venv");
  assert.equal(resolved.command, "/ws/.venv/bin/delegation-machine");
  assert.deepEqual(resolved.args, ["serve"]);
});

test("PATH is searched in order", () => {
  const resolved = resolveServerCommand(settingsWith({}), host(["/usr/bin/delegation-machine"]));
  assert.deepEqual(resolved, { command: "/usr/bin/delegation-machine", args: ["serve"], source: "path" });
});

test("windows looks in .venv\\Scripts and falls back to `python`", () => {
  const windows = { platform: "win32" as const, env: { PATH: "C:\\bin" } };
  const script = path.join("C:\\ws", ".venv", "Scripts", "delegation-machine.exe");
  const found = resolveServerCommand(settingsWith({}), host([script], { ...windows, workspaceRoots: ["C:\\ws"] }));
  assert.equal(found.command, script);
  const fallback = resolveServerCommand(settingsWith({}), host([], windows));
  assert.equal(fallback.command, "python");
});

test("nothing configured or found falls back to python3 -m", () => {
  const resolved = resolveServerCommand(settingsWith({}), host([]));
  assert.deepEqual(resolved, {
    command: "python3",
    args: ["-m", "delegation_machine.server", "serve"],
    source: "fallback",
  });
  assert.equal(describeServerCommand(resolved), "python3 -m delegation_machine.server serve (from fallback)");
});

test("a command that cannot run is caught before starting", () => {
  const environment = host(["/usr/bin/python3"]);
  const problem = (command: string) => serverCommandProblem({ command, args: [], source: "fallback" }, environment);
  assert.equal(problem("/usr/bin/python3"), undefined);
  assert.equal(problem("python3"), undefined, "found on PATH");
  assert.equal(problem("/opt/missing/delegation-machine"), "/opt/missing/delegation-machine is not an executable file");
  assert.equal(problem("delegation-machine"), "delegation-machine is not on PATH");
});
