// Bundles the extension into dist/extension.js (vscode stays external: VS Code provides it).
// With --tests, transpiles src/ and test/ file by file into out/ so the node test runner can
// load them and a fake `vscode` module can be swapped in at require time.
import { build } from "esbuild";
import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

function typescriptFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return typescriptFiles(path);
    return path.endsWith(".ts") && !path.endsWith(".d.ts") ? [path] : [];
  });
}

const common = { platform: "node", target: "node18", format: "cjs", sourcemap: true, logLevel: "warning" };

if (process.argv.includes("--tests")) {
  rmSync("out", { recursive: true, force: true });
  await build({
    ...common,
    entryPoints: [...typescriptFiles("src"), ...typescriptFiles("test")],
    outdir: "out",
    outbase: ".",
    bundle: false,
  });
} else {
  await build({
    ...common,
    entryPoints: ["src/extension.ts"],
    outfile: "dist/extension.js",
    bundle: true,
    external: ["vscode"],
    minify: process.argv.includes("--minify"),
  });
}
