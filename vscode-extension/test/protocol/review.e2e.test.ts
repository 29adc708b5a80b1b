// End to end over LSP with Microsoft's protocol client: the extension's own review view code
// (ReviewProvider, ReviewTree, decideHunk, preTaskText from src/common) drives the real
// `delegation-machine serve` on a copy of samples/inventory. A `fix` of storage.py leaves two
// pending hunks (the unused `import sys` removed, `yaml.load` made safe); the tree shows
// task -> file -> hunks from `delegation.hunks`; the user types inside the yaml hunk, rejects
// it (the agent's change is undone, the typing stays) and accepts the other one (kept, the
// task settles `accepted`). Only the `vscode` module is faked (the output channel).
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import { DidChangeTextDocumentNotification, ExecuteCommandRequest } from "vscode-languageserver-protocol/node";
import type { ServerCommands } from "../../src/common/commands";
import { EXPANDED, LEAF, preTaskText, type ReviewNode, ReviewTree } from "../../src/common/review";
import { decideHunk, ReviewProvider } from "../../src/common/reviewView";
import { parseTaskUpdate, TaskBoard } from "../../src/common/tasks";
import * as vscodeapi from "../../src/common/vscodeapi";
import { LspSession, type Observed } from "./lspSession";

const extensionRoot = path.resolve(__dirname, "..", "..", "..");
const repoRoot = path.resolve(extensionRoot, "..");
const serverBin = process.env.DELEGATION_MACHINE_BIN ?? path.join(repoRoot, ".venv", "bin", "delegation-machine");
const sampleDir = path.join(repoRoot, "samples", "inventory");
const targetFile = "inventory/storage.py";
const STEP_MS = Number(process.env.DELEGATION_STEP_TIMEOUT_MS ?? 90_000);
const FINISHED = ["verified", "failed", "escalated", "cancelled", "rejected", "no-change", "held"];
const DIFF_COMMAND = "delegation.review.showDiff";
const TYPED = "  # mine";
// A comment typed at the end of the fixed line is the user's, beside the agent's change (the
// agent's edit covers only the characters it changed, not the line's end): rejecting the hunk
// restores the old call and leaves the comment where it was typed, on the same line.

function isTaskUpdate(event: Observed, taskId: string, states: string[]): boolean {
  return event.method === "delegation/taskUpdated" && event.params.taskId === taskId && states.includes(event.params.state);
}

function copySample(): string {
  const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "dm-review-"));
  fs.cpSync(sampleDir, workspace, {
    recursive: true,
    filter: (source) => !/[\\/](\.delegation|__pycache__|\.pytest_cache)$/.test(source),
  });
  return workspace;
}

/** The extension's ServerCommands, over the test's protocol connection. */
class SessionCommands implements ServerCommands {
  readonly sent: string[] = [];
  constructor(private readonly session: LspSession) {}
  execute(command: string, args: unknown[]): Promise<unknown> {
    this.sent.push(command);
    return this.session.within(
      command,
      this.session.connection.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }),
      STEP_MS,
    );
  }
}

/** Every node of the tree, depth first, with its item (what VS Code would render). */
function render(provider: ReviewProvider, node?: ReviewNode, depth = 0): { depth: number; node: ReviewNode; label: string; description?: string; collapsibleState: number; contextValue: string }[] {
  return provider.getChildren(node).flatMap((child) => {
    const item = provider.getTreeItem(child);
    return [
      { depth, node: child, label: item.label, description: item.description, collapsibleState: item.collapsibleState, contextValue: item.contextValue },
      ...render(provider, child, depth + 1),
    ];
  });
}

test("the review tree lists a fix's hunks from the server; one is rejected after typing in it, one accepted", { timeout: 6 * STEP_MS }, async (t) => {
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
    if (process.env.DELEGATION_SERVER_LOG) fs.writeFileSync(process.env.DELEGATION_SERVER_LOG, session.stderr);
    await session.shutdown();
    fs.rmSync(workspace, { recursive: true, force: true });
  });

  // The extension's pieces, as activate() wires them: the board fed by taskUpdated, the
  // tree over the board, the provider asking the server through ServerCommands.
  // (The session already handles taskUpdated; the board replays what it observed, in order.)
  const board = new TaskBoard();
  let replayed = 0;
  const syncBoard = () => {
    for (const event of session.observed.slice(replayed)) {
      if (event.method === "delegation/taskUpdated") board.record(parseTaskUpdate(event.params));
    }
    replayed = session.observed.length;
  };
  const server = new SessionCommands(session);
  const log = vscodeapi.createOutputChannel("Delegation review test");
  const provider = new ReviewProvider(new ReviewTree(board), server, log, DIFF_COMMAND);
  let redraws = 0;
  provider.onDidChangeTreeData(() => void redraws++);
  const refresh = async () => {
    syncBoard();
    await provider.refresh();
  };

  await session.initialize(pathToFileURL(workspace).href, { delegation: { agents: 2 } }, STEP_MS);
  const file = path.join(workspace, targetFile);
  const uri = pathToFileURL(file).href;
  const onDisk = fs.readFileSync(file, "utf8");
  const document = await session.open(uri, onDisk);
  const original = document.text;
  assert.ok(original.includes("import sys\n") && original.includes("yaml.load(handle, Loader=yaml.Loader)"));

  await refresh();
  assert.deepEqual(provider.getChildren(), [], "no task yet, yet the tree is not empty");

  // 1. Delegate a fix of the file and wait until it is verified and its edit applied.
  const beforeDelegate = session.mark();
  const started = (await server.execute("delegation.delegate", [{ uri, instruction: "fix" }])) as { taskId?: unknown };
  assert.equal(typeof started?.taskId, "string", JSON.stringify(started));
  const taskId = started.taskId as string;
  const finished = await session.waitFor(`taskUpdated ${taskId} finished`, (e) => isTaskUpdate(e, taskId, FINISHED), 2 * STEP_MS, beforeDelegate);
  assert.equal(finished.params.state, "verified", `task ended ${JSON.stringify(finished.params)}\n${session.transcript()}`);
  assert.ok(document.text.includes("yaml.safe_load(handle)"), `the fix did not reach the editor:\n${document.text}`);
  assert.ok(!document.text.includes("import sys\n"), "the fix kept `import sys`");
  assert.deepEqual(session.appliedEdits.filter((e) => !e.applied), [], "the server sent an edit the editor had to refuse");

  // 2. The tree, from `delegation.hunks`: task -> file -> two hunks, labelled by the extension.
  await refresh();
  assert.ok(redraws >= 2, "refresh did not redraw the view");
  const lines = document.text.split("\n");
  const removedAt = original.split("\n").indexOf("import sys");
  const safeLine = lines.findIndex((l) => l.includes("yaml.safe_load(handle)"));
  const rows = render(provider);
  assert.deepEqual(
    rows.map(({ depth, label, description, collapsibleState, contextValue }) => ({ depth, label, description, collapsibleState, contextValue })),
    [
      { depth: 0, label: `fix ${taskId}`, description: "verified · 2 hunks", collapsibleState: EXPANDED, contextValue: "delegation.task" },
      { depth: 1, label: "storage.py", description: "2 hunks", collapsibleState: EXPANDED, contextValue: "delegation.file" },
      { depth: 2, label: `line ${removedAt + 1}: removed`, description: "import sys", collapsibleState: LEAF, contextValue: "delegation.hunk" },
      { depth: 2, label: `line ${safeLine + 1}: changed`, description: "safe_load(handle", collapsibleState: LEAF, contextValue: "delegation.hunk" },
    ],
  );
  const [importsNode, loadsNode] = rows.filter((r) => r.node.kind === "hunk").map((r) => r.node as Extract<ReviewNode, { kind: "hunk" }>);
  assert.equal(importsNode.uri, uri);
  assert.equal(provider.getTreeItem(loadsNode).command?.command, DIFF_COMMAND);
  // The diff's left side (the pre-task text) is exactly the file before the task.
  assert.equal(preTaskText(document.text, provider.tree.hunksOf(taskId, uri)), original);

  // 3. The user types on the yaml hunk's line, after the agent's change: the hunk keeps its id,
  // and the typing is the user's, beside the hunk (it is in neither its before nor its after).
  lines[safeLine] += TYPED;
  document.text = lines.join("\n");
  document.version += 1;
  await session.connection.sendNotification(DidChangeTextDocumentNotification.type, {
    textDocument: { uri, version: document.version },
    contentChanges: [{ text: document.text }],
  });
  await refresh();
  const typedIn = provider.tree.hunksOf(taskId, uri);
  assert.deepEqual(typedIn.map((h) => h.hunkId), [importsNode.hunkId, loadsNode.hunkId], "typing inside a hunk changed the hunk ids");
  assert.ok(!typedIn[1].after.includes(TYPED) && !typedIn[1].before.includes(TYPED), JSON.stringify(typedIn[1]));

  // 4. Reject the yaml hunk from its tree node: the agent's change is gone, the typing stays.
  const beforeReject = session.mark();
  const rejected = await decideHunk(server, log, "reject", loadsNode);
  assert.deepEqual(rejected, { taskId, hunkId: loadsNode.hunkId, state: "verified" });
  await session.waitFor("the reject's workspace/applyEdit", (e) => e.method === "workspace/applyEdit" && JSON.stringify(e.params).includes(uri), STEP_MS, beforeReject);
  const restoredLine = "        items = yaml.load(handle, Loader=yaml.Loader)";
  assert.ok(!document.text.includes("safe_load"), `the rejected change is still there:\n${document.text}`);
  assert.ok(document.text.includes(restoredLine), `the pre-task line is not back:\n${document.text}`);
  assert.ok(document.text.includes(TYPED), "the user's typing inside the rejected hunk is lost");
  assert.ok(!document.text.includes("import sys\n"), "rejecting one hunk undid the other");
  // Apart from the typing, the file is now its pre-task text less the other (pending) hunk.
  assert.equal(document.text.replace(TYPED, ""), original.replace("import sys\n", ""));
  const afterReject = document.text;
  await t.test("the typing stays at the end of its line", () => {
    assert.ok(afterReject.includes(`${restoredLine}${TYPED}\n    return {item`), afterReject.split("\n").slice(safeLine - 1, safeLine + 3).join("\n"));
  });
  await refresh();
  assert.deepEqual(
    render(provider).map((r) => `${"  ".repeat(r.depth)}${r.label} (${r.description})`),
    [`fix ${taskId} (verified · 1 hunk)`, "  storage.py (1 hunk)", `    line ${removedAt + 1}: removed (import sys)`],
  );

  // 5. Accept the other hunk: it is kept and the task settles accepted; the tree is empty.
  const beforeAccept = session.mark();
  const accepted = (await decideHunk(server, log, "accept", importsNode)) as { state?: string };
  assert.equal(accepted?.state, "accepted", JSON.stringify(accepted));
  await session.waitFor(`taskUpdated ${taskId} accepted`, (e) => isTaskUpdate(e, taskId, ["accepted"]), STEP_MS, beforeAccept);
  await refresh();
  assert.equal(board.get(taskId)?.state, "accepted");
  assert.deepEqual(provider.getChildren(), []);
  // The accepted hunk's change stays; nothing else moved (the rejected one stays rejected).
  assert.equal(document.text, afterReject);
  assert.ok(!document.text.includes("import sys\n") && !document.text.includes("safe_load"), document.text);
  assert.deepEqual(session.appliedEdits.filter((e) => !e.applied), [], "the server sent an edit the editor had to refuse");
  assert.deepEqual(server.sent.filter((c) => c !== "delegation.hunks"), ["delegation.delegate", "delegation.rejectHunk", "delegation.acceptHunk"]);
  t.diagnostic(`on disk after accept: ${fs.readFileSync(file, "utf8") === onDisk ? "unchanged (the editor owns the open buffer)" : "changed"}`);
});
