import { findRunningNode } from '../../control/client.js'
import { ControlServer } from '../../control/server.js'
import { decloudVersion } from '../../control/version.js'
import { checkDataDir } from '../../node/data-dir.js'
import { createDecloudNode } from '../../node/index.js'
import { perGiBMonth } from '../../protocols/opencloud/api/units.js'
import { CHAIN_OPTIONS, CHAIN_USAGE, CliError, UsageError, EXIT, checkMultiaddrs, commonOptions, err, hasChainOptions, out, parse, parseChainOptions, parseNetworkMode, parsePrice, resolveDataDir, untilSignal } from '../command.js'
import type { DecloudNode, DecloudNodeOptions } from '../../node/index.js'
import type { PolicyReloadEvent } from '../../policy/reload.js'
import type { Command } from '../command.js'

/** After the first signal, how long a clean stop may take before the process exits anyway */
const STOP_DEADLINE = 10_000

/** What `decloud node` charges for storage when payments are on (sats) */
// market-level defaults: with the default 4/8 redundancy a user pays 2 × 2 = 4 sat per GiB-month
// (about $4 per TB-month at $100,000/BTC, Storj's list price) and 8 sat per GiB read
// (docs/files.md#cost); sellers set their own with --price
const DEFAULT_PUT_PRICING = perGiBMonth(2n)
const DEFAULT_GET_PRICING = { base: 0n, rate: 1n, per: 134_217_728n }
const DEFAULT_PUT_PRICE = '2 sat per GiB-month (any put costs at least 1 sat)'
const DEFAULT_GET_PRICE = '1 sat per 128 MiB'

const usage = `usage: decloud node [options]

Starts a node that buys and sells: creates the data dir (peer key, LevelDB),
listens, serves OpenCloud (info, peers, market, sha256, storage) and the
local control API, advertises the services it sells (sha256, storage) in
decloud's DHT and their prices on the market, and prints one line per listen
address:
  listening on /ip4/…/tcp/…/p2p/<peer id>
Ctrl-C (SIGINT) or SIGTERM stops it cleanly; a second Ctrl-C exits at once.

Payments are in bitcoin: the node has a wallet (<data dir>/wallet.json, a
BIP39 seed, mode 0600; set DECLOUD_WALLET_PASSPHRASE to encrypt a new one or
open an encrypted one), takes attached and deferred payments for what it
sells and pays its own deferred promises when they fall due. By default the
chain is an embedded regtest chain in <data dir>/chain, and an empty wallet
gets regtest coins at start. Storage is sold at ${DEFAULT_PUT_PRICE} (put) and
${DEFAULT_GET_PRICE} (get); sha256 is free.

The policy (who may call what, at what price, how often, on what tab) is
--policy FILE, else <data dir>/policy.yaml when it exists, else the default
policy (decloud policy default prints it). It is reloaded when the file
changes or on SIGHUP; a bad edit keeps the policy in force.

options:
  --data-dir DIR         data dir (default $DECLOUD_DATA_DIR or ~/.decloud)
  --listen MULTIADDR     address to listen on, repeatable
                         (default /ip4/0.0.0.0/tcp/4001; port 0 with --dev)
  --dev                  development mode: random port
  --bootstrap MULTIADDR  a node of the swarm to join, repeatable
  --mdns                 find peers on the local network with mDNS
  --network-mode MODE    local (keep loopback and private addresses) or public; default
                         local while the node has no public address and no public --bootstrap
  --nat MODE             upnp (map the listen port on the home router by UPnP/NAT-PMP) or
                         none; default upnp, none with --dev (public mode only, docs/nat.md)
  --public-ranges CIDRS  IPv4 ranges (comma-separated, repeatable) to treat as public, for
                         private deployments and tests, e.g. 10.99.0.0/16
  --no-relay             do not relay for others, even when reachable
  --relay-limit B/S      what one relayed connection may carry: BYTES/SECONDS
                         (default 1048576/120)
${CHAIN_USAGE}
  --no-payments          sell for free, pay nothing: no chain, no wallet
  --price S.M=PRICE      the price of a method, repeatable: BASE, BASE+RATE/PER or
                         RATE/PER integer satoshis; storage.put and storage.renew are
                         per byte·second, PER may be GiB-month (e.g. storage.put=2/GiB-month)
  --policy FILE          the policy file (YAML or JSON; see docs/policy.md)
  --no-policy            no policy: every call is allowed at the services' prices
  --metrics              serve Prometheus metrics at /metrics on the control port
                         (bearer token from <data dir>/control.token; docs/dashboard.md)

The dashboard is served on the control port (127.0.0.1 only): the node prints
a one-time login URL at start; \`decloud dashboard\` opens a new one.

exit codes: 0 stopped cleanly · 1 could not start (e.g. data dir in use) · 2 bad command line

examples:
  decloud node
  decloud node --dev --data-dir /tmp/a --listen /ip4/127.0.0.1/tcp/0
  decloud node --network-mode public --nat none --public-ranges 10.99.0.0/24
`

export const command: Command = {
  name: 'node',
  summary: 'start a node that buys and sells (Ctrl-C stops it)',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      ...commonOptions('data-dir'),
      listen: { type: 'string', multiple: true },
      dev: { type: 'boolean', default: false },
      bootstrap: { type: 'string', multiple: true },
      mdns: { type: 'boolean', default: false },
      'network-mode': { type: 'string' },
      nat: { type: 'string' },
      'public-ranges': { type: 'string', multiple: true },
      'no-relay': { type: 'boolean', default: false },
      'relay-limit': { type: 'string' },
      ...CHAIN_OPTIONS,
      'no-payments': { type: 'boolean', default: false },
      price: { type: 'string', multiple: true },
      policy: { type: 'string' },
      'no-policy': { type: 'boolean', default: false },
      metrics: { type: 'boolean', default: false }
    })
    if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}" (see decloud node --help)`) }
    const networkMode = parseNetworkMode(values['network-mode'])
    const nat = values.nat ?? (values.dev === true ? 'none' : 'upnp')
    if (nat !== 'upnp' && nat !== 'none') { throw new UsageError(`--nat must be upnp or none, not "${nat}"`) }
    const publicRanges = (values['public-ranges'] ?? []).flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
    for (const r of publicRanges) {
      if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(r)) { throw new UsageError(`--public-ranges: "${r}" is not an IPv4 CIDR such as 10.99.0.0/16`) }
    }
    const relayLimit = parseRelayLimit(values['relay-limit'])
    if (values['no-relay'] === true && relayLimit != null) { throw new UsageError('give --no-relay or --relay-limit, not both') }
    const listen = values.listen != null ? checkMultiaddrs('listen', values.listen) : undefined
    const bootstrap = values.bootstrap != null ? checkMultiaddrs('bootstrap', values.bootstrap) : undefined
    const dataDir = resolveDataDir(values['data-dir'])
    const payments = values['no-payments'] !== true
    if (!payments && hasChainOptions(values)) { throw new UsageError('--no-payments goes without chain options') }
    const chain = parseChainOptions(values, { env: payments })
    if (values['no-policy'] === true && values.policy != null) { throw new UsageError('give --policy FILE or --no-policy, not both') }
    const prices = new Map<string, { base: bigint, rate: bigint, per: bigint }>()
    for (const p of values.price ?? []) {
      const { service, method, pricing } = parsePrice(p)
      const key = `${service}.${method}`
      if (!['storage.put', 'storage.get', 'sha256.hash'].includes(key)) { throw new UsageError(`--price: ${key} cannot be priced here (storage.put, storage.get, sha256.hash)`) }
      prices.set(key, pricing)
    }
    if (!payments && [...prices.values()].some(p => p.base > 0n || p.rate > 0n)) { throw new UsageError('--price with --no-payments: nobody could pay that price') }

    const running = await findRunningNode(dataDir).catch(() => undefined)
    if (running != null) {
      throw new CliError(`a decloud node is already running for the data dir ${dataDir} (pid ${running.info.pid}, peer ${running.node.peerId}); stop it first or use another --data-dir`)
    }

    // catch signals from now on: a Ctrl-C during start still stops cleanly
    const signal = untilSignal()
    // SIGHUP reloads the policy and must never end the node: not one without a policy, nor one still starting
    const started: { node?: DecloudNode } = {}
    process.on('SIGHUP', () => {
      const reloader = started.node?.policy?.reloader
      if (reloader == null) {
        void err(started.node == null ? 'SIGHUP: the node is starting, policy not reloaded' : 'SIGHUP: this node runs without a policy (--no-policy), nothing to reload')
        return
      }
      void reloader.reload()
    })
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
      ...(networkMode != null ? { networkMode } : {}),
      nat: {
        nat,
        publicRanges,
        relay: values['no-relay'] === true ? { enabled: false } : relayLimit
      },
      storage: {
        pricing: {
          put: prices.get('storage.put') ?? (payments ? DEFAULT_PUT_PRICING : undefined),
          get: prices.get('storage.get') ?? (payments ? DEFAULT_GET_PRICING : undefined)
        }
      },
      ...(prices.has('sha256.hash') ? { sha256: { pricing: prices.get('sha256.hash') } } : {}),
      payments: payments ? { chain, passphrase: process.env.DECLOUD_WALLET_PASSPHRASE } : false,
      policy: values['no-policy'] === true ? false : { file: values.policy, sighup: false, onReload: (e) => { void err(reloadLine(e)) } },
      // one node per process: libp2p's byte counters feed the dashboard's bandwidth chart (and /metrics with --metrics)
      metrics: true
    }
    // an existing data dir keeps its mode: say so when others can read it (our secret files are tightened)
    for (const w of await checkDataDir(dataDir).catch(() => [])) { await err(`warning: ${w}`) }
    let node: DecloudNode
    try {
      node = await createDecloudNode(options)
    } catch (e: any) {
      throw new CliError(startError(e, dataDir))
    }
    started.node = node
    const control = new ControlServer({ node, dataDir, version: decloudVersion(), prometheus: values.metrics === true })
    try {
      await control.start()
    } catch (e: any) {
      await node.stop().catch(() => {})
      throw new CliError(`cannot start the control API: ${e.message}`)
    }

    await out(node.listening().map(a => `listening on ${a}\n`).join(''))
    await err(`peer id ${node.peerId.toString()} · data dir ${dataDir} · control API on 127.0.0.1:${control.port} · Ctrl-C to stop`)
    if (node.payments != null) {
      const p = node.payments
      const balance = await p.wallet.balance().catch(() => undefined)
      await err(`chain ${p.backend.description} · wallet ${p.wallet.identityAddress} · balance ${balance != null ? `${balance.confirmed} sat` : 'unknown'}`)
    }
    if (node.policy != null) { await err(`policy ${node.policy.file ?? 'default (decloud policy default prints it)'}`) }
    await err(`dashboard ${control.loginUrl()} (one-time link; decloud dashboard prints a new one)${values.metrics === true ? ` · metrics ${control.origin}/metrics` : ''}`)
    const reachability = node.libp2p.services.reachability
    if (reachability == null) {
      await err(`network mode ${node.networkMode}: reachability not checked (peers are on this machine or LAN)`)
    } else {
      await err(`network mode ${node.networkMode} · reachability unknown: asking peers to dial back (AutoNAT)`)
      reachability.onChange(() => { void err(reachabilityLine(node)) })
    }

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

/** The line printed when the reachability verdict changes */
function reachabilityLine (node: DecloudNode): string {
  const r = node.reachability()
  if (r.reachability === 'public') { return `reachability public: peers dial ${r.verified.join(', ')} · DHT ${r.dht}${r.relaying ? ' · relaying for others' : ''}` }
  if (r.reachability === 'private') { return `reachability private: peers cannot dial this node${r.observed.length > 0 ? ` (seen at ${r.observed.join(', ')})` : ''} · DHT client · reserving a relay slot; buyers reach it through relays` }
  return 'reachability unknown'
}

/** `--relay-limit BYTES/SECONDS` */
function parseRelayLimit (value: string | undefined): { dataLimit: bigint, durationLimit: number } | undefined {
  if (value == null) { return undefined }
  const m = /^([0-9]{1,15})\/([0-9]{1,9})$/.exec(value)
  if (m == null || BigInt(m[1]) === 0n || Number(m[2]) === 0) { throw new UsageError(`--relay-limit must be BYTES/SECONDS (positive integers), e.g. 1048576/120, not "${value}"`) }
  return { dataLimit: BigInt(m[1]), durationLimit: Number(m[2]) * 1000 }
}

/** The line a policy reload prints, good or refused */
function reloadLine (e: PolicyReloadEvent): string {
  if (!e.ok) { return `policy not reloaded: ${e.error.message} (the policy in force is kept)` }
  return e.file != null ? `policy reloaded from ${e.file}: ${e.rules} rules` : `policy reloaded: no policy file, the default policy (${e.rules} rules)`
}

/** One line for a node that failed to start */
function startError (e: any, dataDir: string): string {
  const message = String(e?.message ?? e)
  if (/in use by another/.test(message)) { return message }
  if (e?.name === 'PublicRangeError' || e?.name === 'PolicyError' || e?.name === 'ChainConfigError' || e?.name === 'WrongPassphraseError' || e?.name === 'PassphraseRequiredError' || e?.name === 'WalletFileError') { return message }
  if (e?.code === 'EACCES' || e?.code === 'EPERM') { return `cannot use the data dir ${dataDir}: ${message}` }
  if (/EADDRINUSE|address already in use/i.test(message)) {
    // libp2p lists every failed address with a stack: keep the addresses
    const failed = [...message.matchAll(/^\s*(\/\S+): Error: listen EADDRINUSE/gm)].map(m => m[1])
    return `cannot listen on ${failed.length > 0 ? failed.join(', ') : 'the address'}: address already in use; pick another with --listen, or --dev for a random port`
  }
  return `cannot start the node: ${message}`
}
