// ethers 6 against nodus's JSON-RPC over WebSocket: a wallet on a WebSocketProvider
// deploys the OpenZeppelin ERC-20 and moves tokens, while the same provider follows new
// blocks, pending transactions and the token's Transfer events through eth_subscribe.
// Usage: node subscribe.mjs <ws-url> <artifact.json>
// Prints one JSON line of results; exits non-zero with a message on any mismatch.
import fs from "node:fs";
import { ContractFactory, WebSocketProvider, Wallet, Contract } from "ethers";

// Hardhat's third development account (funded by nodus's dev genesis).
const KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const TO = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
const TIMEOUT_MS = 60_000;

function fail(msg) {
  console.log(JSON.stringify({ ok: false, error: msg }));
  process.exit(1);
}

function within(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

const [url, artifactPath] = process.argv.slice(2);
if (!url || !artifactPath) fail("usage: node subscribe.mjs <ws-url> <artifact.json>");
const art = JSON.parse(fs.readFileSync(artifactPath, "utf8"));

try {
  const provider = new WebSocketProvider(url);
  const wallet = new Wallet(KEY, provider);
  const blocks = [];
  await provider.on("block", (n) => blocks.push(n));
  const pending = new Set();
  await provider.on("pending", (h) => pending.add(h));

  const factory = new ContractFactory(art.abi, art.bytecode, wallet);
  const supply = 10n ** 24n;
  const token = await factory.deploy(supply);
  await within(token.waitForDeployment(), "the deployment");
  const address = await token.getAddress();

  // The Transfer event, through a logs subscription filtered on the token's address.
  const amount = 4321n;
  let arrived;
  const event = new Promise((resolve) => (arrived = resolve));
  // Sends eth_subscribe on the socket before the transfer below, so it is in place first.
  await token.on("Transfer", (from, to, value, ev) => {
    if (to === TO) arrived({ from, to, value, block: ev.log.blockNumber, tx: ev.log.transactionHash });
  });
  const tx = await new Contract(address, art.abi, wallet).transfer(TO, amount);
  const receipt = await within(tx.wait(), "the transfer's receipt");
  const got = await within(event, "the Transfer event");
  if (got.from !== wallet.address || got.value !== amount || got.tx !== tx.hash) {
    fail(`Transfer event wrong: ${JSON.stringify(got, (_, v) => (typeof v === "bigint" ? v.toString() : v))}`);
  }
  if (got.block !== receipt.blockNumber) fail(`event block ${got.block} != receipt's ${receipt.blockNumber}`);
  await within(
    new Promise((resolve) => {
      const check = () => (blocks.includes(receipt.blockNumber) ? resolve() : setTimeout(check, 50));
      check();
    }),
    `block ${receipt.blockNumber} on the block subscription`,
  );
  if (!pending.has(tx.hash)) fail("the pending subscription missed the transfer");
  const balance = await token.balanceOf(TO);
  if (balance !== amount) fail(`balance ${balance} != ${amount}`);
  await provider.removeAllListeners();
  await token.removeAllListeners();
  await provider.destroy();
  console.log(
    JSON.stringify({ ok: true, contract: address, blocks: blocks.length, pending: pending.size, event_block: got.block }),
  );
  process.exit(0);
} catch (e) {
  fail(String(e && e.stack ? e.stack : e));
}
