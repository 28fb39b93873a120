"""web3.py against nodus's JSON-RPC: deploy an OpenZeppelin ERC-20 (compiled by solc),
move tokens, read balances and Transfer logs, follow new blocks, pending transactions
and Transfer events through polling filters and through subscriptions over WebSocket
(--read-ws, web3.py's WebSocketProvider), and send value transfers of both transaction
types. Transactions go to node A (--submit), are mined elsewhere, and
everything is read back from node C (--read).

Prints one JSON line of results; exits non-zero with a message on any mismatch.
"""

import argparse
import asyncio
import json
import sys

from eth_account import Account
from web3 import AsyncWeb3, Web3, WebSocketProvider

# First two accounts of the mnemonic "test test ... junk" (funded by nodus's dev genesis).
DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OTHER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
RECEIVER = "0x000000000000000000000000000000000000bEEF"


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def send(w3_submit, w3_read, acct, tx, timeout):
    if "nonce" not in tx:
        tx["nonce"] = w3_submit.eth.get_transaction_count(acct.address, "pending")
    signed = acct.sign_transaction(tx)
    h = w3_submit.eth.send_raw_transaction(signed.raw_transaction)
    return w3_read.eth.wait_for_transaction_receipt(h, timeout=timeout, poll_latency=0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--submit", required=True)
    ap.add_argument("--read", required=True)
    ap.add_argument("--read-ws", required=True)
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    art = json.load(open(a.artifact))
    submit = Web3(Web3.HTTPProvider(a.submit))
    read = Web3(Web3.HTTPProvider(a.read))
    if not submit.is_connected() or not read.is_connected():
        fail("JSON-RPC not reachable")
    chain_id = submit.eth.chain_id
    if chain_id != read.eth.chain_id:
        fail("the two nodes report different chain ids")
    acct = Account.from_key(DEPLOYER_KEY)
    supply = 1_000_000 * 10**18

    # Deploy: web3.py fills nonce ("pending"), gas (eth_estimateGas) and EIP-1559 fees.
    Token = submit.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = Token.constructor(supply).build_transaction({"from": acct.address})
    r = send(submit, read, acct, tx, a.timeout)
    if r.status != 1 or not r.contractAddress:
        fail(f"deployment failed: {dict(r)}")
    token = read.eth.contract(address=r.contractAddress, abi=art["abi"])
    if len(read.eth.get_code(r.contractAddress)) == 0:
        fail("no code at the contract address on the reading node")
    if token.functions.symbol().call() != "NOD" or token.functions.totalSupply().call() != supply:
        fail("token metadata wrong")
    deploy_block = r.blockNumber

    # Polling filters, as web3.py makes them: new blocks and the token's Transfer events
    # on the reading node, pending transactions on the submitting one.
    new_blocks = read.eth.filter("latest")
    new_pending = submit.eth.filter("pending")
    transfers = token.events.Transfer.create_filter(from_block=deploy_block)

    # Move tokens, read balances and the Transfer log on the other node.
    amount = 1234 * 10**18
    t = submit.eth.contract(address=r.contractAddress, abi=art["abi"])
    tx = t.functions.transfer(OTHER, amount).build_transaction({"from": acct.address})
    r2 = send(submit, read, acct, tx, a.timeout)
    if r2.status != 1:
        fail("token transfer reverted")
    if token.functions.balanceOf(OTHER).call() != amount:
        fail("receiver's token balance wrong")
    if token.functions.balanceOf(acct.address).call() != supply - amount:
        fail("sender's token balance wrong")
    logs = token.events.Transfer.get_logs(from_block=deploy_block)
    moves = [(l.args["from"], l.args["to"], l.args["value"]) for l in logs]
    if (acct.address, OTHER, amount) not in moves or len(moves) != 2:
        fail(f"Transfer logs wrong: {moves}")
    fresh = [(l.args["from"], l.args["to"], l.args["value"]) for l in transfers.get_new_entries()]
    if fresh != [(acct.address, OTHER, amount)]:
        fail(f"the Transfer filter's new entries: {fresh}")
    if transfers.get_new_entries():
        fail("the Transfer filter reported the transfer twice")
    if len(transfers.get_all_entries()) != 2:
        fail("the Transfer filter's entries from the deployment on are not mint and transfer")
    blocks = new_blocks.get_new_entries()
    if r2.blockHash not in blocks:
        fail(f"the block filter missed block {r2.blockNumber}: {blocks}")
    pending = new_pending.get_new_entries()
    if r2.transactionHash not in pending:
        fail(f"the pending filter missed the transfer: {pending}")
    if not read.eth.uninstall_filter(new_blocks.filter_id):
        fail("uninstalling a block filter")
    if read.eth.uninstall_filter(new_blocks.filter_id):
        fail("a filter uninstalled twice")

    # A transfer beyond the balance reverts; estimateGas reports it as a revert.
    try:
        t.functions.transfer(OTHER, supply * 2).estimate_gas({"from": acct.address})
        fail("an overdrawn transfer was not refused")
    except Exception as e:  # ContractLogicError / ContractCustomError
        if "revert" not in str(e).lower() and "0x" not in str(e):
            fail(f"unexpected error for an overdrawn transfer: {e}")

    # Value transfers: legacy (type 0, EIP-155) and EIP-1559 (type 2).
    before = read.eth.get_balance(RECEIVER)
    nonce = submit.eth.get_transaction_count(acct.address, "pending")
    legacy = {"to": RECEIVER, "value": 5, "gas": 21000, "gasPrice": submit.eth.gas_price,
              "nonce": nonce, "chainId": chain_id}
    r3 = send(submit, read, acct, legacy, a.timeout)
    dyn = {"to": RECEIVER, "value": 7, "gas": 21000, "nonce": nonce + 1, "chainId": chain_id,
           "maxFeePerGas": submit.eth.gas_price * 2, "maxPriorityFeePerGas": submit.eth.max_priority_fee}
    r4 = send(submit, read, acct, dyn, a.timeout)
    if r3.type != 0 or r4.type != 2 or r3.status != 1 or r4.status != 1:
        fail(f"value transfers: types {r3.type}/{r4.type}, status {r3.status}/{r4.status}")
    if read.eth.get_balance(RECEIVER) != before + 12:
        fail("receiver's ether balance wrong")
    # State at earlier blocks (the node keeps the last 128): balances, a call, the nonce.
    if read.eth.get_balance(RECEIVER, block_identifier=r4.blockNumber - 1) != before + 5 - (5 if r3.blockNumber == r4.blockNumber else 0):
        fail("receiver's ether balance at the block before the last transfer")
    if token.functions.balanceOf(OTHER).call(block_identifier=r2.blockNumber - 1) != 0:
        fail("receiver's token balance before the token transfer")
    if token.functions.balanceOf(OTHER).call(block_identifier=r2.blockNumber) != amount:
        fail("receiver's token balance at the token transfer's block")
    deploy_nonce = read.eth.get_transaction(r.transactionHash)["nonce"]
    if read.eth.get_transaction_count(acct.address, block_identifier=deploy_block - 1) != deploy_nonce:
        fail("the deployer's nonce before the deployment")
    if token.functions.balanceOf(OTHER).call(block_identifier=r2.blockHash) != amount:
        fail("a call at a block named by its hash")
    # Subscriptions over WebSocket on the reading node: a Transfer arrives as it is mined.
    amount2 = 99 * 10**18
    tx = t.functions.transfer(OTHER, amount2).build_transaction({"from": acct.address})
    seen = asyncio.run(subscriptions(a.read_ws, token, lambda: send(submit, read, acct, tx, a.timeout), a.timeout))
    r5 = seen["receipt"]
    if seen["transfer"] != (acct.address, OTHER, amount2) or seen["log_block"] != r5.blockHash:
        fail(f"the Transfer subscription: {seen}")
    if r5.blockNumber not in seen["heads"]:
        fail(f"newHeads missed block {r5.blockNumber}: {seen['heads']}")
    if r5.transactionHash not in seen["pending"]:
        fail("newPendingTransactions missed the transfer")
    miners = sorted({read.eth.get_block(x.blockNumber).miner for x in (r, r2, r3, r4)})
    print(json.dumps({
        "ok": True,
        "solc": art.get("solc"),
        "contract": r.contractAddress,
        "deploy_gas": r.gasUsed,
        "transfer_gas": r2.gasUsed,
        "blocks": [r.blockNumber, r2.blockNumber, r3.blockNumber, r4.blockNumber],
        "miners": miners,
        "logs": len(moves),
        "filters": {"blocks": len(blocks), "pending": len(pending)},
        "subscriptions": {"heads": len(seen["heads"]), "pending": len(seen["pending"])},
    }))


async def subscriptions(url, token, transact, timeout):
    """Subscribes to newHeads, the token's Transfer logs and pending transactions over
    WebSocket, runs `transact` (which waits for its receipt) beside, and collects until
    the Transfer event and its block have arrived."""
    topic = Web3.keccak(text="Transfer(address,address,uint256)")
    seen = {"heads": [], "pending": [], "transfer": None, "log_block": None}
    async with AsyncWeb3(WebSocketProvider(url)) as w3:
        heads = await w3.eth.subscribe("newHeads")
        logs = await w3.eth.subscribe("logs", {"address": token.address, "topics": [topic]})
        pending = await w3.eth.subscribe("newPendingTransactions")
        sending = asyncio.get_running_loop().run_in_executor(None, transact)

        async def collect():
            async for msg in w3.socket.process_subscriptions():
                sub, result = msg["subscription"], msg["result"]
                if sub == heads:
                    seen["heads"].append(result["number"])
                elif sub == pending:
                    seen["pending"].append(result)
                elif sub == logs:
                    ev = token.events.Transfer().process_log(result)
                    seen["transfer"] = (ev.args["from"], ev.args["to"], ev.args["value"])
                    seen["log_block"] = result["blockHash"]
                if seen["log_block"] is not None and sending.done():
                    receipt = sending.result()
                    if receipt.blockNumber in seen["heads"]:
                        return

        await asyncio.wait_for(collect(), timeout)
        seen["receipt"] = sending.result()
        for s in (heads, logs, pending):
            if not await w3.eth.unsubscribe(s):
                fail(f"unsubscribing {s}")
    return seen


if __name__ == "__main__":
    main()
