// Drives `delegation-machine acp` once with the TypeScript ACP SDK's ClientSideConnection:
// initialize -> session/new -> session/prompt "fix" on one file -> the permission request
// (answered with the option whose kind is allow_once) -> the prompt's result.
// Usage: node ts_client.mjs AGENT WORKSPACE FILE   (env ACP_NODE_MODULES: the SDK's install)
// Prints one JSON line: what the client saw, for the Python test to check.
import { spawn } from "node:child_process";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pathToFileURL } from "node:url";

const [agentCommand, workspace, file] = process.argv.slice(2);
const sdkEntry = path.join(
  process.env.ACP_NODE_MODULES,
  "@zed-industries/agent-client-protocol/dist/acp.js",
);
const acp = await import(pathToFileURL(sdkEntry).href);

const seen = { updates: [], permissions: [], errors: [] };

class RecordingClient {
  async sessionUpdate(params) {
    seen.updates.push(params.update);
  }
  async requestPermission(params) {
    seen.permissions.push(params);
    const allow = params.options.find((option) => option.kind === "allow_once");
    return { outcome: { outcome: "selected", optionId: allow.optionId } };
  }
}

const child = spawn(agentCommand, ["acp", "--log-level", "WARNING"], {
  stdio: ["pipe", "pipe", "inherit"],
});
const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));
const connection = new acp.ClientSideConnection(() => new RecordingClient(), stream);

const init = await connection.initialize({
  protocolVersion: acp.PROTOCOL_VERSION,
  clientCapabilities: { fs: { readTextFile: false, writeTextFile: false } },
});
const session = await connection.newSession({ cwd: workspace, mcpServers: [] });
let unknown = null;
try {
  await connection.prompt({ sessionId: "no-such-session", prompt: [{ type: "text", text: "fix" }] });
} catch (error) {
  unknown = { code: error.code, message: error.message };
}
const result = await connection.prompt({
  sessionId: session.sessionId,
  prompt: [
    { type: "text", text: "fix" },
    { type: "resource_link", name: path.basename(file), uri: pathToFileURL(file).href },
  ],
});
child.stdin.end();
const exitCode = await new Promise((resolve) => child.on("exit", resolve));

const kinds = seen.updates.map((update) => update.sessionUpdate);
const diffs = seen.updates
  .filter((update) => update.sessionUpdate === "tool_call_update")
  .flatMap((update) => update.content ?? [])
  .filter((content) => content.type === "diff");
console.log(
  JSON.stringify({
    protocolVersion: init.protocolVersion,
    agentCapabilities: init.agentCapabilities,
    sessionId: session.sessionId,
    unknownSession: unknown,
    stopReason: result.stopReason,
    updateKinds: kinds,
    toolCalls: seen.updates.filter((update) => update.sessionUpdate === "tool_call"),
    diffs,
    permissionOptions: seen.permissions.map((p) => p.options.map((option) => option.kind)),
    permissionToolCalls: seen.permissions.map((p) => p.toolCall.toolCallId),
    exitCode,
  }),
);
