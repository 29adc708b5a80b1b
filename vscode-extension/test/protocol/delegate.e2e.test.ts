// End to end over LSP with Microsoft's protocol client: the real `delegation-machine serve`
// on a copy of samples/inventory. A seeded semgrep finding is delegated as a fix through the
// server's own code action; the edit comes back as workspace/applyEdit, the task is verified,
// and the diagnostics are republished without the finding. Waits on notifications only.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import {
  type CodeAction,
  CodeActionRequest,
  type Command,
  type Diagnostic,
  ExecuteCommandRequest,
} from "vscode-languageserver-protocol/node";
import { LspSession, offsetAt, type Observed } from "./lspSession";

const extensionRoot = path.resolve(__dirname, "..", "..", "..");
const repoRoot = path.resolve(extensionRoot, "..");
const serverBin = process.env.DELEGATION_MACHINE_BIN ?? path.join(repoRoot, ".venv", "bin", "delegation-machine");
const sampleDir = process.env.DELEGATION_SAMPLE_DIR ?? path.join(repoRoot, "samples", "inventory");
const targetFile = process.env.DELEGATION_TARGET_FILE ?? "inventory/storage.py";

const STEP_MS = Number(process.env.DELEGATION_STEP_TIMEOUT_MS ?? 90_000);
const SERVER_COMMANDS = ["delegation.delegate", "delegation.cancel", "delegation.accept", "delegation.reject", "delegation.status"];
const FINISHED = ["verified", "failed", "escalated", "cancelled", "rejected", "no-change", "held"];

function isSemgrep(diagnostic: Diagnostic): boolean {
  return diagnostic.source === "delegation-machine" && String(diagnostic.code ?? "").startsWith("semgrep:");
}

function isFixable(diagnostic: Diagnostic): boolean {
  const data = diagnostic.data as { fixAvailable?: boolean } | undefined;
  return isSemgrep(diagnostic) && data?.fixAvailable !== false;
}

function isTaskUpdate(event: Observed, taskId: string, states: string[]): boolean {
  return event.method === "delegation/taskUpdated" && event.params.taskId === taskId && states.includes(event.params.state);
}

function copySample(): string {
  const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "dm-protocol-"));
  fs.cpSync(sampleDir, workspace, {
    recursive: true,
    filter: (source) => !/[\\/](\.delegation|__pycache__|\.pytest_cache)$/.test(source),
  });
  return workspace;
}

test("a seeded semgrep finding is delegated, applied, verified and cleared", { timeout: 6 * STEP_MS }, async (t) => {
  if (!fs.existsSync(serverBin)) {
    t.skip(`server not installed: ${serverBin} is missing (run \`make venv\` or set DELEGATION_MACHINE_BIN)`);
    return;
  }
  const workspace = copySample();
  const session = new LspSession(serverBin, ["serve"], workspace, {
    ...process.env,
    SEMGREP_ENABLE_VERSION_CHECK: "0",
    SEMGREP_SEND_METRICS: "off",
  });
  t.after(async () => {
    for (const line of session.timeline()) t.diagnostic(line);
    // DELEGATION_SERVER_LOG=path keeps the server's stderr (its log) for a post-mortem.
    if (process.env.DELEGATION_SERVER_LOG) fs.writeFileSync(process.env.DELEGATION_SERVER_LOG, session.stderr);
    await session.shutdown();
    fs.rmSync(workspace, { recursive: true, force: true });
  });

  // 1. initialize: the server advertises the contract's commands and code action kinds.
  const init = await session.initialize(pathToFileURL(workspace).href, { delegation: { agents: 2 } }, STEP_MS);
  const advertised = init.capabilities.executeCommandProvider?.commands ?? [];
  for (const command of SERVER_COMMANDS) assert.ok(advertised.includes(command), `${command} not in ${JSON.stringify(advertised)}`);
  const actionProvider = init.capabilities.codeActionProvider;
  const kinds = typeof actionProvider === "object" ? actionProvider.codeActionKinds ?? [] : [];
  assert.ok(kinds.includes("refactor.delegate") && kinds.includes("quickfix.delegate"), JSON.stringify(kinds));

  // 2. didOpen the file with a seeded finding; wait for semgrep's diagnostics.
  const file = path.join(workspace, targetFile);
  const uri = pathToFileURL(file).href;
  const document = await session.open(uri, fs.readFileSync(file, "utf8"));
  const published = await session.waitFor(
    `publishDiagnostics with a fixable semgrep: finding for ${uri}`,
    (e) => e.method === "textDocument/publishDiagnostics" && e.params.uri === uri && e.params.diagnostics.some(isFixable),
    STEP_MS,
  );
  const finding: Diagnostic = published.params.diagnostics.find(isFixable);
  const code = String(finding.code);
  const countBefore = published.params.diagnostics.filter((d: Diagnostic) => d.code === code).length;
  const originalText = document.text;
  const findingText = originalText.slice(offsetAt(originalText, finding.range.start), offsetAt(originalText, finding.range.end));
  assert.ok(findingText.length > 0, `the finding's range ${JSON.stringify(finding.range)} is empty`);

  // 3. codeAction on the finding: every action is a `Delegate: ` action carrying the command.
  const actions = (await session.within(
    "the codeAction response",
    session.connection.sendRequest(CodeActionRequest.type, {
      textDocument: { uri },
      range: finding.range,
      context: { diagnostics: [finding], triggerKind: 1 },
    }),
    STEP_MS,
  )) as (CodeAction | Command)[] | null;
  assert.ok(actions && actions.length > 0, "no code actions for a diagnostic of our own");
  for (const action of actions) {
    assert.ok(action.title.startsWith("Delegate: "), action.title);
    const command = "command" in action && typeof action.command === "object" ? action.command : (action as Command);
    assert.equal(command.command, "delegation.delegate", JSON.stringify(action));
  }
  const quickfix = actions.find(
    (a): a is CodeAction => "kind" in a && a.kind === "quickfix.delegate" && (a.diagnostics ?? []).some((d) => d.code === code),
  );
  assert.ok(quickfix?.command, `no quickfix.delegate action for ${code}: ${JSON.stringify(actions)}`);
  const delegateArgs = quickfix.command.arguments?.[0] as { uri: string; kind?: string; instruction: string };
  assert.equal(delegateArgs.uri, uri);
  assert.equal(delegateArgs.kind, "fix");

  // 4. executeCommand delegation.delegate -> {taskId}.
  const beforeDelegate = session.mark();
  const execute = (command: string, args: unknown[]) =>
    session.within(command, session.connection.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }), STEP_MS);
  const result = (await execute(quickfix.command.command, quickfix.command.arguments ?? [])) as { taskId?: unknown };
  assert.equal(typeof result?.taskId, "string", `delegation.delegate returned ${JSON.stringify(result)}`);
  const taskId = result.taskId as string;

  // 5. The task finishes; it must be `verified`, after its edit reached the editor.
  const finished = await session.waitFor(`taskUpdated ${taskId} finished`, (e) => isTaskUpdate(e, taskId, FINISHED), 2 * STEP_MS, beforeDelegate);
  assert.equal(finished.params.state, "verified", `task ended ${JSON.stringify(finished.params)}\n${session.transcript()}`);
  assert.equal(finished.params.kind, "fix");
  assert.ok(finished.params.files.includes(targetFile), JSON.stringify(finished.params.files));
  const edits = session.appliedEdits.filter((e) => JSON.stringify(e.params.edit).includes(uri));
  assert.ok(edits.length > 0, "no workspace/applyEdit for the open document");
  assert.deepEqual(session.appliedEdits.filter((e) => !e.applied), [], "the server sent an edit the editor had to refuse");
  assert.ok(edits.every((e) => (e.params.edit.documentChanges ?? []).length > 0), "edits to open documents must use documentChanges");
  assert.notEqual(document.text, originalText, "the document did not change");
  const applyEvent = session.observed.find((e) => e.seq >= beforeDelegate && e.method === "workspace/applyEdit")!;

  // 6. The queued -> ... -> verified path was reported, with work-done progress around it.
  const states = session.observed.filter((e) => isTaskUpdate(e, taskId, [e.params?.state])).map((e) => e.params.state);
  assert.equal(states[0], "queued", states.join(" -> "));
  const create = session.observed.find((e) => e.seq >= beforeDelegate && e.method === "window/workDoneProgress/create");
  assert.ok(create, "no work-done progress token was created for the delegation");
  await session.waitFor(
    "$/progress end for the delegation",
    (e) => e.method === "$/progress" && e.params.token === create.params.token && e.params.value?.kind === "end",
    STEP_MS,
    beforeDelegate,
  );

  // 7. Diagnostics are republished for the edited text, without the finding.
  const refreshed = await session.waitFor(
    `publishDiagnostics for ${uri} with fewer ${code}`,
    (e) =>
      e.method === "textDocument/publishDiagnostics" &&
      e.params.uri === uri &&
      e.params.diagnostics.filter((d: Diagnostic) => d.code === code).length < countBefore,
    STEP_MS,
    applyEvent.seq,
  );
  assert.ok(refreshed.params.diagnostics.every((d: Diagnostic) => d.source === "delegation-machine"));

  // 8. Accept keeps the edit; status knows the task.
  const beforeAccept = session.mark();
  const accepted = (await execute("delegation.accept", [{ taskId }])) as { state?: string };
  assert.equal(accepted?.state, "accepted", JSON.stringify(accepted));
  await session.waitFor(`taskUpdated ${taskId} accepted`, (e) => isTaskUpdate(e, taskId, ["accepted"]), STEP_MS, beforeAccept);
  const status = await execute("delegation.status", []);
  assert.ok(JSON.stringify(status).includes(taskId), `status does not list ${taskId}: ${JSON.stringify(status).slice(0, 500)}`);

  // 9. Nothing else was lost: the file's other findings (not touched by this fix) are still
  // published once the task is done.
  const untouched = published.params.diagnostics.filter(
    (d: Diagnostic) => d.code !== code && document.text.includes(originalText.slice(offsetAt(originalText, d.range.start), offsetAt(originalText, d.range.end))),
  );
  assert.ok(untouched.length > 0, "the sample file should carry a second finding the fix leaves alone");
  await t.test("the file's other findings stay published", () => {
    const latest = session.diagnostics.get(uri) ?? [];
    for (const other of untouched) {
      assert.ok(
        latest.some((d) => d.code === other.code),
        `${other.code} (line ${other.range.start.line + 1}) is still in the file but no longer published; latest: ${JSON.stringify(latest.map((d) => d.code))}`,
      );
    }
  });
});
