import { findRunningNode } from '../../control/client.js'
import { ControlServer } from '../../control/server.js'
import { decloudVersion } from '../../control/version.js'
import { createDecloudNode } from '../../node/index.js'
import { CliError, UsageError, EXIT, checkMultiaddrs, err, out, parse, parseNetworkMode, resolveDataDir } from '../command.js'
import type { DecloudNode, DecloudNodeOptions } from '../../node/index.js'
import type { Command } from '../command.js'

/** After the first signal, how long a clean stop may take before the process exits anyway */
const STOP_DEADLINE = 10_000

const usage = `usage: decloud node [options]

Starts a node that buys and sells: creates the data dir (peer key, LevelDB),
listens, serves OpenCloud (info, peers, market, sha256, storage) and the
local control API, advertises the services it sells (sha256, storage) in
decloud's DHT and their prices on the market, and prints one line per listen
address:
  listening on /ip4/…/tcp/…/p2p/<peer id>
Ctrl-C (SIGINT) or SIGTERM stops it cleanly; a second Ctrl-C exits at once.

options:
  --data-dir DIR         data dir (default $DECLOUD_DATA_DIR or ~/.decloud)
  --listen MULTIADDR     address to listen on, repeatable
                         (default /ip4/0.0.0.0/tcp/4001; port 0 with --dev)
  --dev                  development mode: random port
  --bootstrap MULTIADDR  a node of the swarm to join, repeatable
  --mdns                 find peers on the local network with mDNS
  --network-mode MODE    local (keep loopback and private addresses) or public

exit codes: 0 stopped cleanly · 1 could not start (e.g. data dir in use) · 2 bad command line

examples:
  decloud node
  decloud node --dev --data-dir /tmp/a --listen /ip4/127.0.0.1/tcp/0
`

/** Resolves with the name of the first SIGINT/SIGTERM; a second one exits at once */
async function untilSignal (): Promise<NodeJS.Signals> {
  return new Promise(resolve => {
    let seen = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (seen) {
        process.stderr.write(`decloud: ${signal} again: exiting without a clean stop\n`)
        process.exit(signal === 'SIGINT' ? 130 : 143)
      }
      seen = true
      resolve(signal)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}

export const command: Command = {
  name: 'node',
  summary: 'start a node that buys and sells (Ctrl-C stops it)',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      'data-dir': { type: 'string' },
      listen: { type: 'string', multiple: true },
      dev: { type: 'boolean', default: false },
      bootstrap: { type: 'string', multiple: true },
      mdns: { type: 'boolean', default: false },
      'network-mode': { type: 'string' }
    })
    if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}" (see decloud node --help)`) }
    const networkMode = parseNetworkMode(values['network-mode'])
    const listen = values.listen != null ? checkMultiaddrs('listen', values.listen) : undefined
    const bootstrap = values.bootstrap != null ? checkMultiaddrs('bootstrap', values.bootstrap) : undefined
    const dataDir = resolveDataDir(values['data-dir'])

    const running = await findRunningNode(dataDir).catch(() => undefined)
    if (running != null) {
      throw new CliError(`a decloud node is already running for the data dir ${dataDir} (pid ${running.info.pid}, peer ${running.node.peerId}); stop it first or use another --data-dir`)
    }

    // catch signals from now on: a Ctrl-C during start still stops cleanly
    const signal = untilSignal()
    // a long-running node reports a stray rejection (a peer that vanished
    // mid-operation…) and keeps serving instead of dying with a stack trace
    process.on('unhandledRejection', (reason: any) => {
      const text = process.env.DECLOUD_DEBUG === '1' && reason?.stack != null ? reason.stack : String(reason?.message ?? reason)
      process.stderr.write(`decloud: unhandled rejection: ${text}\n`)
    })
    const options: DecloudNodeOptions = {
      dataDir,
      listen,
      dev: values.dev === true,
      ...(bootstrap != null ? { bootstrap } : {}),
      ...(values.mdns === true ? { mdns: true } : {}),
      ...(networkMode != null ? { networkMode } : {})
    }
    let node: DecloudNode
    try {
      node = await createDecloudNode(options)
    } catch (e: any) {
      throw new CliError(startError(e, dataDir))
    }
    const control = new ControlServer({ node, dataDir, version: decloudVersion() })
    try {
      await control.start()
    } catch (e: any) {
      await node.stop().catch(() => {})
      throw new CliError(`cannot start the control API: ${e.message}`)
    }

    await out(node.addresses().map(a => `listening on ${a}\n`).join(''))
    await err(`peer id ${node.peerId.toString()} · data dir ${dataDir} · control API on 127.0.0.1:${control.port} · Ctrl-C to stop`)

    const received = await signal
    const deadline = setTimeout(() => {
      process.stderr.write(`decloud: the node did not stop within ${STOP_DEADLINE / 1000} s; exiting\n`)
      process.exit(EXIT.FAILURE)
    }, STOP_DEADLINE)
    deadline.unref()
    await err(`${received}: stopping`)
    await control.stop()
    await node.stop()
    clearTimeout(deadline)
    await err('stopped')
    return EXIT.OK
  }
}

/** One line for a node that failed to start */
function startError (e: any, dataDir: string): string {
  const message = String(e?.message ?? e)
  if (/in use by another/.test(message)) { return message }
  if (e?.code === 'EACCES' || e?.code === 'EPERM') { return `cannot use the data dir ${dataDir}: ${message}` }
  if (/EADDRINUSE|address already in use/i.test(message)) {
    // libp2p lists every failed address with a stack: keep the addresses
    const failed = [...message.matchAll(/^\s*(\/\S+): Error: listen EADDRINUSE/gm)].map(m => m[1])
    return `cannot listen on ${failed.length > 0 ? failed.join(', ') : 'the address'}: address already in use; pick another with --listen, or --dev for a random port`
  }
  return `cannot start the node: ${message}`
}
