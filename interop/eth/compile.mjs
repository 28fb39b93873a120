// Compiles Token.sol (an OpenZeppelin ERC-20) with solc-js; prints {abi, bytecode} as JSON.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = path.dirname(new URL(import.meta.url).pathname);

function findImports(p) {
  const file = path.join(here, "node_modules", p);
  if (fs.existsSync(file)) return { contents: fs.readFileSync(file, "utf8") };
  return { error: `not found: ${p}` };
}

const input = {
  language: "Solidity",
  sources: { "Token.sol": { content: fs.readFileSync(path.join(here, "Token.sol"), "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const c = out.contracts["Token.sol"].Token;
process.stdout.write(JSON.stringify({ abi: c.abi, bytecode: "0x" + c.evm.bytecode.object, solc: solc.version() }));
