import { ControlApiError, findRunningNode } from '../control/client.js'
import { CliError, UsageError } from './command.js'
import type { ControlClient } from '../control/client.js'
import type { NetworkMode } from '../node/defaults.js'
import type { DecloudNode } from '../node/index.js'

export interface NodeOrSwarmOptions<T> {
  dataDir: string
  /** `--bootstrap` addresses, for when no node runs for the data dir */
  bootstrap: string[]
  networkMode?: NetworkMode
  /** what the command does, for error messages ("read the market") */
  what: string
  /** through the running node's control API */
  viaNode(client: ControlClient): Promise<T>
  /** from a short-lived swarm client, when no node runs (or it lacks the endpoint) */
  viaSwarm(node: DecloudNode): Promise<T>
}

/**
 * Asks the node running for the data dir; when none runs, or it has no such
 * endpoint, joins the swarm for a moment (off `--bootstrap`, or off the
 * running node's own addresses) and asks there.
 */
export async function fromNodeOrSwarm<T> (o: NodeOrSwarmOptions<T>): Promise<T> {
  let bootstrap = o.bootstrap
  const running = await findRunningNode(o.dataDir).catch(() => undefined)
  if (running != null) {
    try {
      return await o.viaNode(running.client)
    } catch (e: any) {
      if (!(e instanceof ControlApiError && e.status === 404)) { throw new CliError(`the node running for ${o.dataDir} did not answer: ${e.message}`) }
      // a node without a market (or without the endpoint): ask its swarm through it
      if (bootstrap.length === 0) { bootstrap = running.node.addresses }
    }
  }
  if (bootstrap.length === 0) { throw new UsageError(`no node is running for ${o.dataDir}: start one (decloud node) or give --bootstrap MULTIADDR`) }
  const { withSwarmClient } = await import('../node/transient.js')
  try {
    return await withSwarmClient({ bootstrap, networkMode: o.networkMode }, o.viaSwarm)
  } catch (e: any) {
    if (e instanceof CliError) { throw e }
    throw new CliError(`cannot ${o.what}: ${e.message}`)
  }
}
