import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { findRunningNode } from '../../control/client.js'
import { readKey } from '../../node/data-dir.js'
import { openCloudId } from '../../protocols/opencloud/api/signing.js'
import { CliError, EXIT, UsageError, out, parse, resolveDataDir, commonOptions } from '../command.js'
import type { Command } from '../command.js'

const usage = `usage: decloud id [--addr | --peer] [--data-dir DIR]

Prints the node's libp2p peer id and its OpenCloud ID (oc:<peer id>): from the
running node when there is one, else from the data dir's key. A running node
also says whether peers can dial it (reachability: public, private or
unknown; docs/nat.md) and the addresses that verdict rests on.

options:
  --addr          print only the running node's address to call it at
                  (/ip4/…/tcp/…/p2p/…, loopback first), for A=$(decloud id --addr)
  --peer          print only the peer id
  --data-dir DIR  data dir (default $DECLOUD_DATA_DIR or ~/.decloud)

exit codes: 0 printed · 1 the data dir has no key yet (start a node once), or
            --addr and no node is running · 2 bad command line
`

export const command: Command = {
  name: 'id',
  summary: 'print this node\'s peer id and OpenCloud ID',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      ...commonOptions('data-dir'),
      addr: { type: 'boolean', default: false },
      peer: { type: 'boolean', default: false }
    })
    if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}"`) }
    if (values.addr === true && values.peer === true) { throw new UsageError('give --addr or --peer, not both') }
    const dataDir = resolveDataDir(values['data-dir'])
    let peerId: string
    let ocId: string
    let reach = ''
    const running = await findRunningNode(dataDir).catch(() => undefined)
    if (values.addr === true) {
      if (running == null) { throw new CliError(`no node is running for ${dataDir}: start one (decloud node --data-dir ${dataDir}); its addresses are where it listens`) }
      // loopback first: the address works from this machine whatever the network
      const addrs = [...(running.node.listening ?? running.node.addresses)].sort((a, b) => Number(!isLoopback(a)) - Number(!isLoopback(b)))
      if (addrs.length === 0) { throw new CliError(`the node running for ${dataDir} listens on no address`) }
      await out(addrs[0] + '\n')
      return EXIT.OK
    }
    if (running != null) {
      peerId = running.node.peerId
      ocId = running.node.openCloudId
      const r = running.node.reachability
      if (r != null) {
        reach = `reachability: ${r.reachability}\n` +
          r.verified.map(a => `verified: ${a}\n`).join('') +
          r.observed.map(a => `observed: ${a}\n`).join('') +
          r.relayed.map(a => `relayed: ${a}\n`).join('')
      }
    } else {
      const key = await readKey(dataDir)
      if (key == null) {
        throw new CliError(`the data dir ${dataDir} has no key yet: start a node once (decloud node --data-dir ${dataDir})`)
      }
      const id = peerIdFromPrivateKey(key)
      peerId = id.toString()
      ocId = openCloudId(id)
    }
    await out(values.peer === true ? `${peerId}\n` : `peer id: ${peerId}\nopencloud id: ${ocId}\n${reach}`)
    return EXIT.OK
  }
}

function isLoopback (addr: string): boolean {
  return /^\/(ip4\/127\.|ip6\/::1\/)/.test(addr)
}
