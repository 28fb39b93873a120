// nostr-tools, as a Nostr client uses it, against nodus relays. Usage:
//   node client.mjs <relay A url> <relay C url> <an event nodus signed, as JSON> <secret key hex>
// Authenticates to A (NIP-42), publishes a note through A as the given key (whose
// follower C is) while subscribed on C, checks signatures both ways, sends a forged
// event, reads NIP-11; prints one JSON line of findings and exits 0, or prints the
// error and exits 1.
import WebSocket from 'ws'
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { finalizeEvent, getPublicKey, verifyEvent } from 'nostr-tools/pure'

useWebSocketImplementation(WebSocket)

const [urlA, urlC, nodusJson, skHex] = process.argv.slice(2)
const within = (ms, what, p) =>
  Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms))])

async function main() {
  const out = {}
  const nodusEvent = JSON.parse(nodusJson)
  out.nodus_event_verifies = verifyEvent({ ...nodusEvent })

  const sk = new Uint8Array(Buffer.from(skHex, 'hex'))
  const pk = getPublicKey(sk)
  const a = await Relay.connect(urlA)
  const c = await Relay.connect(urlC)

  // NIP-42: the relay sent its challenge on connect; answer it as nostr-tools does.
  for (let i = 0; i < 50 && !a.challenge; i++) await new Promise((r) => setTimeout(r, 100))
  try {
    out.auth = await within(10000, 'AUTH OK', a.auth((evt) => finalizeEvent(evt, sk)))
  } catch (e) {
    out.auth = `failed: ${e.message}`
  }

  let eose
  const eoseSeen = new Promise((resolve) => (eose = resolve))
  const received = new Promise((resolve) => {
    c.subscribe([{ kinds: [1], authors: [pk] }], { onevent: resolve, oneose: () => eose() })
  })
  await within(10000, 'EOSE', eoseSeen)

  const note = finalizeEvent(
    { kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [['t', 'interop']], content: 'hello from nostr-tools' },
    sk,
  )
  out.published = await within(10000, 'OK', a.publish(note))
  const got = await within(20000, 'event on the other relay', received)
  out.id = note.id
  out.pubkey = pk
  out.received_on_other_node = got.id === note.id && verifyEvent({ ...got })

  const forged = { ...finalizeEvent({ kind: 1, created_at: note.created_at, tags: [], content: 'original' }, sk) }
  forged.content = 'tampered'
  try {
    await within(10000, 'OK', a.publish(forged))
    out.forged_refusal = null
  } catch (e) {
    out.forged_refusal = e.message
  }

  out.nodus_event_published = await within(10000, 'OK', a.publish(nodusEvent))

  const info = await fetch(urlA.replace('ws://', 'http://'), {
    headers: { Accept: 'application/nostr+json' },
  }).then((r) => r.json())
  out.nip11_supported_nips = info.supported_nips

  a.close()
  c.close()
  console.log(JSON.stringify(out))
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e?.stack ?? String(e))
    process.exit(1)
  },
)
