/**
 * Embedding decloud in another libp2p app.
 *
 * Two ordinary js-libp2p nodes add OpenCloud as one more libp2p service. The
 * first sells the built-in `sha256` service and a `text` service of its own;
 * the second calls them over 127.0.0.1, prints what it got, and both stop.
 * Run it with `npm run build && node dist/examples/embed.js`.
 */
import { pathToFileURL } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { openCloud, ServiceError, sha256Service, Status } from '../src/opencloud.js'
import type { OpenCloud, ServiceDefinition } from '../src/opencloud.js'

const enc = new TextEncoder()
const dec = new TextDecoder()

/**
 * A service of the app's own. It declares its methods, their units and
 * prices; `text.info`, `text.methods` and `text.quote` come from the
 * framework.
 */
export function textService (): ServiceDefinition {
  return {
    name: 'text',
    version: '1.0.0',
    description: 'small text utilities',
    methods: {
      upper: {
        description: 'returns the body (UTF-8) in upper case',
        units: ['byte'],
        usage: (call) => [BigInt(call.body.byteLength)],
        handler: (call) => ({ body: enc.encode(dec.decode(call.body).toUpperCase()) })
      },
      reverse: {
        description: 'returns the body (UTF-8) reversed, by code point',
        units: ['byte'],
        // 1 sat per call plus 1 sat per 100 bytes, rounded up
        pricing: { base: 1n, rate: 1n, per: 100n },
        usage: (call) => [BigInt(call.body.byteLength)],
        handler: (call) => {
          if (call.body.byteLength === 0) { throw new ServiceError(Status.BAD_REQUEST, 'nothing to reverse') }
          return { body: enc.encode([...dec.decode(call.body)].reverse().join('')) }
        }
      }
    }
  }
}

/** A libp2p node with OpenCloud among its services, on a free loopback port */
async function createNode (services: ServiceDefinition[]): Promise<ReturnType<typeof createLibp2p<{ opencloud: OpenCloud }>>> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      opencloud: openCloud({ services })
    }
  })
}

export interface EmbedResults {
  /** the selling node's address, with /p2p/ */
  address: string
  /** sha256.hash of the message, hex */
  hash: string
  /** text.upper of the message */
  upper: string
  /** what text.methods lists */
  methods: string[]
  /** text.quote reverse <bytes of the message>, satoshis */
  quote: bigint
  /** text.reverse without payment: the status path and the amount asked */
  reverse: { path: string, amount?: bigint }
  /** services the seller's info.info lists */
  services: string[]
}

// eslint-disable-next-line no-console
export async function main (message = 'hello from an embedded decloud', print: (line: string) => void = console.log): Promise<EmbedResults> {
  const seller = await createNode([sha256Service(), textService()])
  const buyer = await createNode([])
  try {
    const address = seller.getMultiaddrs()[0].toString()
    print(`seller listening on ${address}`)
    const oc = buyer.services.opencloud
    const body = enc.encode(message)

    const hash = Buffer.from(await oc.callOk(address, { service: 'sha256', method: 'hash', body })).toString('hex')
    print(`sha256.hash   ${hash}`)

    const upper = dec.decode(await oc.callOk(address, { service: 'text', method: 'upper', body }))
    print(`text.upper    ${upper}`)

    const listing = JSON.parse(dec.decode(await oc.callOk(address, { service: 'text', method: 'methods' })))
    const methods: string[] = listing.methods.map((m: { name: string }) => m.name)
    print(`text.methods  ${methods.join(', ')}`)

    const q = JSON.parse(dec.decode(await oc.callOk(address, { service: 'text', method: 'quote', args: ['reverse', String(body.byteLength)] })))
    const quote = BigInt(q.amount)
    print(`text.quote    reverse ${body.byteLength} bytes costs ${quote} sat`)

    // A priced method called without payment: the seller names its price
    const res = await oc.call(address, { service: 'text', method: 'reverse', body })
    const reverse = { path: res.path, amount: res.acceptablePayment?.amount }
    print(`text.reverse  ${res.path}${reverse.amount != null ? ` (asks ${reverse.amount} sat)` : ''}`)
    if (res.status !== Status.TOO_LOW) { throw new Error(`unexpected answer ${res.path}`) }

    const info = JSON.parse(dec.decode(await oc.callOk(address, { service: 'info', method: 'info' })))
    const services: string[] = info.node.services.map((s: { name: string }) => s.name)
    print(`info.info     sells ${services.join(', ')}`)

    return { address, hash, upper, methods, quote, reverse, services }
  } finally {
    await buyer.stop()
    await seller.stop()
  }
}

// run when executed directly (node dist/examples/embed.js), not when imported
if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    // eslint-disable-next-line no-console
    console.error(err)
    process.exitCode = 1
  })
}
