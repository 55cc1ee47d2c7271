/* eslint-disable no-console */
/**
 * The child processes of `bench/fairness.ts`, so that neither the server nor
 * the flooders share a thread with the well-behaved caller being measured:
 *
 * - `server <json>`: a decloud node whose `opencloud` options are the JSON
 * (e.g. `{"fairness":false}`); sends `{ addr }`, answers `{ stats }` to
 * `{ cmd: 'stats' }`;
 * - `flood <addr> <peers> <streams>`: `peers` libp2p nodes, each with its own
 * key, each flooding `addr` on `streams` streams in lockstep with one
 * signed request whose nonce is stale (signed once, sent again and again:
 * the cheapest request to send); `{ cmd: 'count' }` is answered with the
 * responses received so far by status.
 *
 * Both stop when told to (`{ cmd: 'stop' }`) or when the parent goes away.
 */
import '../src/polyfill.js'
import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { MAX_FRAME_SIZE, NONCE_LENGTH, PROTOCOL } from '../src/protocols/opencloud/api/constants.js'
import { openCloudId, requestDigest } from '../src/protocols/opencloud/api/signing.js'
import { FrameReader, encodeVarint } from '../src/protocols/opencloud/net/framing.js'
import { PaymentType, Request, Response } from '../src/protocols/opencloud/pb/opencloud.js'
import { startBenchNode } from './common.js'
import type { Libp2p } from 'libp2p'

if (process.send == null) {
  console.error('fairness-child.js is started by bench/fairness.js, not by hand')
  process.exit(2)
}
const send = (m: unknown): void => { if (process.connected) { process.send?.(m) } }

type Bytes = Uint8Array<ArrayBuffer>

/** One signed sha256.hash request with a random (never issued) nonce, framed */
async function staleRequest (audience: string): Promise<{ key: Awaited<ReturnType<typeof generateKeyPair>>, frame: Uint8Array }> {
  const key = await generateKeyPair('Ed25519')
  const request: Request = {
    id: [openCloudId(peerIdFromPrivateKey(key))],
    sig: [],
    nonce: randomBytes(NONCE_LENGTH) as Bytes,
    service: 'sha256',
    method: 'hash',
    args: [],
    paymentType: PaymentType.PAYMENT_NONE,
    body: randomBytes(64) as Bytes,
    // signed and addressed to the server: it verifies the signature before it finds the nonce stale
    audience,
    signResponse: false
  }
  request.sig = [await key.sign(requestDigest(request)) as Bytes]
  const payload = Request.encode(request)
  const prefix = encodeVarint(payload.byteLength)
  const frame = new Uint8Array(prefix.byteLength + payload.byteLength)
  frame.set(prefix, 0)
  frame.set(payload, prefix.byteLength)
  return { key, frame }
}

async function flood (addr: string, peers: number, streams: number): Promise<void> {
  const counts: Record<string, number> = {}
  const state = { running: true }
  const nodes: Libp2p[] = []
  const loops: Array<Promise<void>> = []
  for (let p = 0; p < peers; p++) {
    const { key, frame } = await staleRequest(openCloudId(addr.slice(addr.lastIndexOf('/p2p/') + 5)))
    const node = await createLibp2p({
      privateKey: key,
      addresses: { listen: [] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ maxOutboundStreams: 4096 })],
      // the server's connection monitor pings its peers and closes the connection of one that does not answer
      services: { ping: ping() },
      // a flooded server answers pings late: a flooder must not hang up on it
      connectionMonitor: { enabled: false }
    })
    nodes.push(node)
    // the server (or a loaded machine's timeouts) may close the connection: dial again
    const link = { connection: await node.dial(multiaddr(addr)) }
    let redial: Promise<void> | undefined
    const reconnect = async (): Promise<void> => {
      redial ??= node.dial(multiaddr(addr)).then((c) => {
        link.connection = c
        counts.redial = (counts.redial ?? 0) + 1
      }, async (err: any) => {
        if (process.env.FAIRNESS_DEBUG != null) { counts[`debug dial ${err.name} ${err.message}`.slice(0, 100)] = 1 }
        counts['redial-failed'] = (counts['redial-failed'] ?? 0) + 1
        await new Promise(resolve => setTimeout(resolve, 100))
      }).finally(() => { redial = undefined })
      await redial
    }
    for (let s = 0; s < streams; s++) {
      loops.push((async () => {
        while (state.running) {
          let stream
          if (link.connection.status !== 'open') { await reconnect() }
          try {
            stream = await link.connection.newStream(PROTOCOL, { maxOutboundStreams: 4096, signal: AbortSignal.timeout(30_000) })
          } catch (err: any) {
            if (process.env.FAIRNESS_DEBUG != null) { counts[`debug ${err.name} ${err.message}`.slice(0, 80)] = 1 }
            counts['stream-refused'] = (counts['stream-refused'] ?? 0) + 1
            await new Promise(resolve => setTimeout(resolve, 100))
            continue
          }
          const frames = new FrameReader(stream, { maxFrameSize: MAX_FRAME_SIZE })
          try {
            while (state.running) {
              if (!stream.send(frame)) { await stream.onDrain({ signal: AbortSignal.timeout(30_000) }) }
              const f = await frames.read({ signal: AbortSignal.timeout(60_000) })
              if (f == null) { break }
              const status = String(Response.decode(f).status)
              counts[status] = (counts[status] ?? 0) + 1
            }
          } catch (err: any) {
            if (counts.reset == null && process.env.FAIRNESS_DEBUG != null) { console.error('flood stream failed', err) }
            counts.reset = (counts.reset ?? 0) + 1
          }
          stream.abort(new Error('flood over'))
        }
      })())
    }
  }
  process.on('message', (m: any) => {
    if (m?.cmd === 'count') { send({ counts: { ...counts } }) }
    if (m?.cmd === 'stop') {
      state.running = false
      void Promise.allSettled(nodes.map(async n => { await n.stop() })).then(() => { process.exit(0) })
    }
  })
  process.on('disconnect', () => { process.exit(0) })
  send({ ready: true })
  await Promise.allSettled(loops)
}

async function serve (json: string): Promise<void> {
  const server = await startBenchNode({ opencloud: JSON.parse(json) })
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) { return }
    stopping = true
    setTimeout(() => { process.exit(1) }, 10_000).unref()
    try {
      await server.destroy()
    } finally {
      process.exit(0)
    }
  }
  process.on('message', (m: any) => {
    if (m?.cmd === 'stats') { send({ stats: server.node.opencloud.stats() }) }
    if (m?.cmd === 'stop') { void stop() }
  })
  process.on('disconnect', () => { void stop() })
  send({ addr: server.addr })
}

const [role, ...args] = process.argv.slice(2)
if (role === 'server') {
  await serve(args[0] ?? '{}')
} else if (role === 'flood') {
  await flood(args[0], Number(args[1]), Number(args[2]))
} else {
  console.error(`unknown role ${role}`)
  process.exit(2)
}
