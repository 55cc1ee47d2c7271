import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { ensureDataDir, loadOrCreateKey } from '../node/data-dir.js'
import { openCloud } from '../protocols/opencloud/net/opencloud.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { Identify } from '@libp2p/identify'

/**
 * Runs `fn` with a short-lived client-only libp2p node (no listen address,
 * no services sold) using the data dir's key, then stops it. Used when no
 * node is running for the data dir; LevelDB is not opened, so this never
 * competes with a node that starts meanwhile.
 *
 * With `ephemeral` it uses a throw-away key instead and leaves the data dir
 * alone: the way to call the data dir's own node, which libp2p will not
 * dial under its own peer id.
 */
export async function withTransientNode<T> (dataDir: string, fn: (opencloud: OpenCloud) => Promise<T>, options: { ephemeral?: boolean } = {}): Promise<T> {
  let privateKey
  if (options.ephemeral === true) {
    privateKey = await generateKeyPair('Ed25519')
  } else {
    await ensureDataDir(dataDir)
    privateKey = await loadOrCreateKey(dataDir)
  }
  const libp2p = await createLibp2p<{ identify: Identify, opencloud: OpenCloud }>({
    privateKey,
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
