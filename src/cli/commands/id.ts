import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { findRunningNode } from '../../control/client.js'
import { readKey } from '../../node/data-dir.js'
import { openCloudId } from '../../protocols/opencloud/api/signing.js'
import { CliError, EXIT, UsageError, out, parse, resolveDataDir } from '../command.js'
import type { Command } from '../command.js'

const usage = `usage: decloud id [--data-dir DIR]

Prints the node's libp2p peer id and its OpenCloud ID (oc:<peer id>): from the
running node when there is one, else from the data dir's key.

options:
  --data-dir DIR  data dir (default $DECLOUD_DATA_DIR or ~/.decloud)

exit codes: 0 printed · 1 the data dir has no key yet (start a node once) · 2 bad command line
`

export const command: Command = {
  name: 'id',
  summary: 'print this node\'s peer id and OpenCloud ID',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, { 'data-dir': { type: 'string' } })
    if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}"`) }
    const dataDir = resolveDataDir(values['data-dir'])
    let peerId: string
    let ocId: string
    const running = await findRunningNode(dataDir).catch(() => undefined)
    if (running != null) {
      peerId = running.node.peerId
      ocId = running.node.openCloudId
    } else {
      const key = await readKey(dataDir)
      if (key == null) {
        throw new CliError(`the data dir ${dataDir} has no key yet: start a node once (decloud node --data-dir ${dataDir})`)
      }
      const id = peerIdFromPrivateKey(key)
      peerId = id.toString()
      ocId = openCloudId(id)
    }
    await out(`peer id: ${peerId}\nopencloud id: ${ocId}\n`)
    return EXIT.OK
  }
}
