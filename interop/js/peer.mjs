// A js-libp2p peer for nodus's interop test (tier 3). Usage:
//   node peer.mjs <nodus multiaddr to dial> [noise|tls]
// The second argument picks the one connection encrypter it offers (default noise).
// Prints one JSON object per line on stdout: listening, identified, ping, message,
// published. Publishes "from-js" on topic "interop" once it has received "from-nodus".
// Exits when stdin closes or after 60 s.

// Node 20 lacks Promise.withResolvers, which current js-libp2p uses.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { tls } = await import('@libp2p/tls')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { gossipsub } = await import('@libp2p/gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const target = process.argv[2]
const security = process.argv[3] ?? 'noise'
if (!target || !['noise', 'tls'].includes(security)) {
  console.error('usage: node peer.mjs <nodus multiaddr> [noise|tls]')
  process.exit(2)
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [security === 'tls' ? tls() : noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: false, emitSelf: false })
  }
})
await node.start()
say({ event: 'listening', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })

node.addEventListener('peer:identify', (evt) => {
  const d = evt.detail
  say({ event: 'identified', peer: d.peerId.toString(), agent: d.agentVersion, protocols: d.protocols })
})

const pubsub = node.services.pubsub
pubsub.subscribe('interop')
let replied = false
pubsub.addEventListener('message', (evt) => {
  const m = evt.detail
  const data = new TextDecoder().decode(m.data)
  say({ event: 'message', topic: m.topic, data, from: m.from?.toString() })
  if (data === 'from-nodus' && !replied) {
    replied = true
    const tryPublish = async () => {
      try {
        await pubsub.publish('interop', new TextEncoder().encode('from-js'))
        say({ event: 'published' })
      } catch (e) {
        setTimeout(tryPublish, 200)
      }
    }
    tryPublish()
  }
})

const ma = multiaddr(target)
await node.dial(ma)
for (let i = 0; i < 3; i++) {
  const rtt = await node.services.ping.ping(ma)
  say({ event: 'ping', rtt })
}

const stop = async (code) => {
  await node.stop()
  process.exit(code)
}
process.stdin.on('end', () => stop(0))
process.stdin.resume()
setTimeout(() => stop(3), 60000)
