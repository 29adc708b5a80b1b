// Loaded with `node --require`: makes `require("vscode")` return the fake in ./vscode, with
// an inert fallback for anything the fake does not implement (see vscode.ts).
import Module = require("node:module");
import * as path from "node:path";

const fakePath = path.join(__dirname, "vscode.js");
const loader = Module as unknown as {
  _load: (request: string, ...rest: unknown[]) => unknown;
};
const originalLoad = loader._load;
let wrapped: unknown;
loader._load = function loadWithFakeVscode(request: string, ...rest: unknown[]) {
  if (request !== "vscode") return originalLoad.call(this, request, ...rest);
  if (!wrapped) {
    const fake = originalLoad.call(this, fakePath, ...rest) as { fakeModule: (exports: object) => unknown };
    wrapped = fake.fakeModule({ ...fake });
  }
  return wrapped;
};
