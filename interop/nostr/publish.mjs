// Publishes one note with nostr-tools, as a Nostr client does. Usage:
//   node publish.mjs <relay url> <secret key hex> <content>
// Prints the note's id and exits 0 once the relay said OK; prints the reason and exits
// 1 otherwise. The demo uses it when `npm ci` has been run here (scripts/test does).
import WebSocket from 'ws'
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { finalizeEvent } from 'nostr-tools/pure'

useWebSocketImplementation(WebSocket)

const [url, skHex, content] = process.argv.slice(2)
const sk = new Uint8Array(Buffer.from(skHex, 'hex'))
const relay = await Relay.connect(url)
const note = finalizeEvent({ kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content }, sk)
try {
  await relay.publish(note)
  console.log(note.id)
  relay.close()
  process.exit(0)
} catch (e) {
  console.error(e?.message ?? String(e))
  process.exit(1)
}
