import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { openCloud } from '../protocols/opencloud/net/opencloud.js'
import type { CallRequest, CallResult } from '../protocols/opencloud/net/client.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { Identify } from '@libp2p/identify'
import type { AbortOptions, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Runs `fn` with a short-lived client-only libp2p node (no listen address,
 * no services sold, no DHT) with `privateKey`, or a throw-away key, then
 * stops it.
 */
export async function withClientNode<T> (privateKey: PrivateKey | undefined, fn: (opencloud: OpenCloud) => Promise<T>): Promise<T> {
  const libp2p = await createLibp2p<{ identify: Identify, opencloud: OpenCloud }>({
    privateKey: privateKey ?? await generateKeyPair('Ed25519'),
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      opencloud: openCloud({ services: [] })
    }
  })
  try {
    return await fn(libp2p.services.opencloud)
  } finally {
    await libp2p.stop()
  }
}

/** Loopback addresses first: a node's own addresses seen from this machine */
export function loopbackFirst (addrs: Multiaddr[]): Multiaddr[] {
  const loop = (a: Multiaddr): boolean => /^\/(ip4\/127\.|ip6\/::1\/)/.test(a.toString())
  return [...addrs.filter(loop), ...addrs.filter(a => !loop(a))]
}

/**
 * A call to a node of this machine from a throw-away identity, over the
 * network, as a stranger would make it: libp2p does not dial its own peer
 * id, so this is how a node (or its user) calls itself. The node's access
 * rules, prices and limits apply as to any stranger. Tries the first three
 * of `addrs`, loopback first.
 */
export async function callAsStranger (addrs: Multiaddr[], call: CallRequest, options: AbortOptions = {}): Promise<CallResult> {
  if (addrs.length === 0) { throw new TypeError('no address to call') }
  return withClientNode(undefined, async (opencloud) => {
    let last: any
    for (const ma of loopbackFirst(addrs).slice(0, 3)) {
      try {
        return await opencloud.call(ma, call, options)
      } catch (err: any) {
        options.signal?.throwIfAborted()
        last = err
      }
    }
    throw last
  })
}
