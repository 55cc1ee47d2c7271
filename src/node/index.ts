import '../polyfill.js'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { identify } from '@libp2p/identify'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { MAX_BODY_SIZE } from '../protocols/opencloud/constants.js'
import { openCloud } from '../protocols/opencloud/opencloud.js'
import { openCloudId } from '../protocols/opencloud/signing.js'
import { sha256Service } from '../services/sha256.js'
import { StorageService, DEFAULT_CAPACITY } from '../services/storage/index.js'
import { Store } from '../store/index.js'
import { defaultDataDir, ensureDataDir, loadOrCreateKey, DB_DIR } from './data-dir.js'
import type { OpenCloud, OpenCloudInit } from '../protocols/opencloud/opencloud.js'
import type { Pricing } from '../services/pricing.js'
import type { ServiceDefinition } from '../services/template.js'
import type { Identify } from '@libp2p/identify'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Libp2p } from 'libp2p'

export const DEFAULT_PORT = 4001

export interface DecloudNodeOptions {
  /** @default `$DECLOUD_DATA_DIR` or `~/.decloud` */
  dataDir?: string
  /** Multiaddrs to listen on @default ['/ip4/0.0.0.0/tcp/4001'] (port 0 with `dev`) */
  listen?: string[]
  /** Development mode: random port; later also an embedded regtest chain */
  dev?: boolean
  /** Use this key instead of the data dir's */
  privateKey?: PrivateKey
  /** Storage service limits and prices */
  storage?: {
    /** total bytes stored @default 10 GiB */
    capacity?: number
    /** largest blob @default the body limit (4 MiB) */
    maxBlobSize?: number
    pricing?: { put?: Pricing, get?: Pricing }
  }
  sha256?: { pricing?: Pricing }
  /** More services to sell */
  services?: ServiceDefinition[]
  /** Passed to the OpenCloud service */
  opencloud?: Omit<OpenCloudInit, 'services'>
}

// a type alias, not an interface: libp2p's ServiceMap needs an index signature
// eslint-disable-next-line @typescript-eslint/consistent-type-definitions
export type DecloudServices = {
  opencloud: OpenCloud
  identify: Identify
  ping: Ping
}

export interface DecloudNode {
  readonly libp2p: Libp2p<DecloudServices>
  readonly opencloud: OpenCloud
  readonly store: Store
  readonly storage: StorageService
  readonly dataDir: string
  readonly peerId: PeerId
  /** `oc:<peer id>` */
  readonly openCloudId: string
  /** Listen addresses with the /p2p/ suffix */
  addresses(): string[]
  stop(): Promise<void>
}

/**
 * Defaults for a decloud libp2p node (TCP, noise, yamux, identify, ping),
 * like Helia's `libp2pDefaults()`; `createDecloudNode` uses them.
 */
export function decloudDefaults (options: { listen: string[], privateKey: PrivateKey, opencloud: OpenCloudInit }): Parameters<typeof createLibp2p<DecloudServices>>[0] {
  return {
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: {
      // many local peers share 127.0.0.1 in development and simulations
      inboundConnectionThreshold: 100
    },
    services: {
      identify: identify(),
      ping: ping(),
      opencloud: openCloud(options.opencloud)
    }
  }
}

/**
 * Starts a batteries-included decloud node: data dir with a persistent key,
 * LevelDB, libp2p with OpenCloud serving `info`, `sha256` and `storage`.
 *
 * @example
 * ```ts
 * const node = await createDecloudNode({ dataDir: '/tmp/a', listen: ['/ip4/127.0.0.1/tcp/0'] })
 * console.log(node.addresses())
 * await node.stop()
 * ```
 */
export async function createDecloudNode (options: DecloudNodeOptions = {}): Promise<DecloudNode> {
  const dataDir = options.dataDir ?? defaultDataDir()
  await ensureDataDir(dataDir)
  const privateKey = options.privateKey ?? await loadOrCreateKey(dataDir)
  const peerId = peerIdFromPrivateKey(privateKey)
  const store = new Store(join(dataDir, DB_DIR))
  try {
    await store.open()
  } catch (err: any) {
    if (err.code === 'LEVEL_DATABASE_NOT_OPEN' && String(err.cause?.message ?? '').includes('lock')) {
      throw new Error(`the data dir ${dataDir} is in use by another decloud process`)
    }
    throw err
  }
  const maxBodySize = options.opencloud?.maxBodySize ?? MAX_BODY_SIZE
  const storage = new StorageService({
    db: store.sub('storage'),
    capacity: options.storage?.capacity ?? DEFAULT_CAPACITY,
    maxBlobSize: Math.min(options.storage?.maxBlobSize ?? maxBodySize, maxBodySize),
    pricing: options.storage?.pricing
  })
  const listen = options.listen ?? [`/ip4/0.0.0.0/tcp/${options.dev === true ? 0 : DEFAULT_PORT}`]
  let libp2p: Libp2p<DecloudServices>
  try {
    libp2p = await createLibp2p(decloudDefaults({
      listen,
      privateKey,
      opencloud: {
        ...options.opencloud,
        services: [sha256Service(options.sha256), storage.definition(), ...(options.services ?? [])]
      }
    }))
  } catch (err) {
    await store.close()
    throw err
  }
  let stopped = false
  return {
    libp2p,
    opencloud: libp2p.services.opencloud,
    store,
    storage,
    dataDir,
    peerId,
    openCloudId: openCloudId(peerId),
    addresses: () => libp2p.getMultiaddrs().map(a => a.toString()),
    async stop () {
      if (stopped) return
      stopped = true
      await libp2p.stop()
      await store.close()
    }
  }
}

export { defaultDataDir, loadOrCreateKey, readKey } from './data-dir.js'
