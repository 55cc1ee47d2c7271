import { ensureDataDir, loadOrCreateKey } from '../node/data-dir.js'
import { withClientNode } from '../node/stranger.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'

/**
 * Runs `fn` with a short-lived client-only libp2p node (no listen address,
 * no services sold) using the data dir's key, then stops it. Used when no
 * node is running for the data dir; LevelDB is not opened, so this never
 * competes with a node that starts meanwhile.
 */
export async function withTransientNode<T> (dataDir: string, fn: (opencloud: OpenCloud) => Promise<T>): Promise<T> {
  await ensureDataDir(dataDir)
  return withClientNode(await loadOrCreateKey(dataDir), fn)
}
