import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { callResultJson } from '../../control/api.js'
import { ControlApiError, findRunningNode } from '../../control/client.js'
import { readKey } from '../../node/data-dir.js'
import { parseMax, parsePayOption } from '../../payments/buyer/pay-option.js'
import { MAX_ARG_LENGTH, MAX_ARGS, MAX_BODY_SIZE } from '../../protocols/opencloud/api/constants.js'
import { readBody } from '../body.js'
import { CliError, TransportError, UsageError, checkMultiaddrs, err, parse, positiveInt, resolveDataDir } from '../command.js'
import { printCall } from '../render.js'
import type { CallJson } from '../../control/api.js'
import type { ControlClient } from '../../control/client.js'
import type { SellersJson } from '../../node/reports.js'
import type { Command } from '../command.js'
import type { Multiaddr } from '@multiformats/multiaddr'

export const DEFAULT_CALL_TIMEOUT = 30_000
/** the control API's largest call timeout */
export const MAX_CALL_TIMEOUT = 300_000

/** Deadline of the seller lookup of --cheapest (ms), at most --timeout */
export const CHEAPEST_LOOKUP_TIMEOUT = 10_000
/** Sellers tried by --cheapest before giving up */
export const CHEAPEST_ATTEMPTS = 3
/**
 * --cheapest through a running node, without --pay, pays a seller that asks
 * for payment with `--pay auto --max` this much: a buyer asking for the
 * cheapest seller means to buy, and 1,000 sat covers a 4 MiB put at 250 sat
 * per MiB, far above the default prices (1 sat per 64 KiB)
 */
export const CHEAPEST_DEFAULT_MAX = 1_000n

const usage = `usage: decloud call <multiaddr> <service>.<method> [args…] [options]
       decloud call --cheapest [--service S] <service>.<method> [args…] [options]

Calls a service on a remote node over OpenCloud and prints the answer:
  sha256.hash        the hex digest (as sha256sum prints it)
  storage.put        the blob id
  JSON answers       the JSON (info, methods, quote, stat, delete…)
  other answers      the raw bytes (use --out FILE, or redirect stdout)

When a node is running for the data dir, the call goes through its control
API (the node's identity and connections); otherwise a short-lived client
node with the data dir's key makes it.

With --cheapest there is no target: the sellers of <service> are found
(the price book and the DHT) and ranked by the price of this call (the body's
length in units when a body is given); the cheapest is called, and the next
ones (up to ${CHEAPEST_ATTEMPTS} in all) only when a seller cannot be reached or times
out. "decloud: cheapest seller <peer id> (<price> sat)" is printed on stderr,
then the answer as usual. Without a running node it joins the swarm through
--bootstrap.

options:
  --body-file F, -f F    send the content of F as the request body; - reads stdin
  --out G, -o G          write the answer's body to G (- for raw bytes to stdout)
  --json                 print the whole response as one JSON object:
                         {status, code, detail, body (base64), bodyHex (≤ 64 bytes),
                          acceptablePayment, signer, peer}
  --timeout MS           give up after MS milliseconds, dial included
                         (default ${DEFAULT_CALL_TIMEOUT}, at most ${MAX_CALL_TIMEOUT}); with --cheapest,
                         per seller tried (the lookup takes at most ${CHEAPEST_LOOKUP_TIMEOUT} ms)
  --cheapest             call the cheapest seller of the service instead of a target
  --service S            with --cheapest: the service, checked against <service>.<method>
  --bootstrap MULTIADDR  with --cheapest and no running node: a node of the swarm,
                         repeatable
  --data-dir DIR         the caller's data dir (default $DECLOUD_DATA_DIR or ~/.decloud)
  --pay HOW              pay for the call with the running node's wallet:
                           attached:SATS           a transaction of SATS now
                           defer:SATS[:THRESHOLD]  a promise of SATS on the seller's tab,
                                                   paid by the node when THRESHOLD
                                                   (time:SECONDS, value:SATS, completion) is due
                           auto                    free when free, else the seller's asking
                                                   price (deferred when it allows, else attached)
                         the price is raised toward --max on too-low; when the seller refuses
                         to defer it switches to attached. Needs a running node.
  --max SATS             the most to pay or promise for this call (required with --pay)
                         --cheapest with a running node and no --pay: a seller that
                         asks for payment is called again with --pay auto --max ${CHEAPEST_DEFAULT_MAX}

A call to the data dir's own node (its address, or its peer id) is made from a
throw-away identity, as a stranger would (libp2p does not dial itself); it
cannot be paid for.

exit codes: 0 ok · 1 the node answered with another status (printed on stderr),
            no seller found, or the command failed · 2 bad command line
            · 3 no answer (dial, timeout)

examples:
  decloud call /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo… sha256.hash --body-file photo.jpg
  decloud call $ADDR storage.put -f photo.jpg
  decloud call $ADDR storage.get <id> --out copy.jpg
  decloud call $ADDR storage.quote put 1048576
  echo hello | decloud call $ADDR sha256.hash --body-file -
  decloud call --service storage --cheapest storage.put -f photo.jpg
  decloud call --cheapest storage.put -f photo.jpg --bootstrap $ADDR
  decloud call $ADDR storage.put -f photo.jpg --pay auto --max 5000
  decloud call $ADDR storage.put -f photo.jpg --pay defer:100:time:3600 --max 200
`

function parseTarget (s: string): { target: Multiaddr | string, multiaddr?: Multiaddr } {
  if (s.startsWith('/')) {
    let ma: Multiaddr
    try {
      ma = multiaddr(s)
    } catch (err: any) {
      throw new UsageError(`"${s}" is not a valid multiaddr: ${err.message}`)
    }
    // multiaddr() takes any base58 after /p2p/; a truncated peer id is a typo, not a dial failure
    const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    if (peer != null) {
      try {
        peerIdFromString(peer)
      } catch {
        throw new UsageError(`"${peer}" in ${s} is not a valid peer id (truncated or mistyped?)`)
      }
    }
    return { target: ma, multiaddr: ma }
  }
  try {
    peerIdFromString(s)
  } catch {
    throw new UsageError(`"${s}" is neither a multiaddr (/ip4/…/tcp/…/p2p/…) nor a peer id`)
  }
  return { target: s }
}

function parseName (s: string): { service: string, method: string } {
  const dot = s.indexOf('.')
  if (dot <= 0 || dot === s.length - 1) { throw new UsageError(`"${s}" is not <service>.<method> (e.g. sha256.hash)`) }
  return { service: s.slice(0, dot), method: s.slice(dot + 1) }
}

type Target = ReturnType<typeof parseTarget>

/** The command line, checked */
interface CallLine {
  /** undefined with --cheapest */
  target?: Target
  targetText?: string
  service: string
  method: string
  args: string[]
  timeout: number
  cheapest: boolean
  bootstrap: string[]
}

function parseCallLine (values: { cheapest?: boolean, service?: string, bootstrap?: string[], timeout?: string }, positionals: string[]): CallLine {
  const cheapest = values.cheapest === true
  if (!cheapest && values.service != null) { throw new UsageError('--service goes with --cheapest (see decloud call --help)') }
  if (!cheapest && values.bootstrap != null) { throw new UsageError('--bootstrap goes with --cheapest; a call with a target dials it directly') }
  if (cheapest) {
    if (positionals.length < 1) { throw new UsageError('usage: decloud call --cheapest <service>.<method> [args…] (see decloud call --help)') }
    if (positionals[0].startsWith('/')) { throw new UsageError(`--cheapest takes no target: decloud call --cheapest <service>.<method> [args…], not "${positionals[0]}"`) }
  } else if (positionals.length < 2) {
    throw new UsageError('usage: decloud call <multiaddr> <service>.<method> [args…] (see decloud call --help)')
  }
  const targetText = cheapest ? undefined : positionals[0]
  const [nameText, ...args] = cheapest ? positionals : positionals.slice(1)
  const target = targetText != null ? parseTarget(targetText) : undefined
  const { service, method } = parseName(nameText)
  if (values.service != null && values.service !== service) {
    throw new UsageError(`--service ${values.service} does not match ${service}.${method}`)
  }
  if (args.length > MAX_ARGS) { throw new UsageError(`at most ${MAX_ARGS} arguments`) }
  if (args.some(a => a.length > MAX_ARG_LENGTH)) { throw new UsageError(`an argument is longer than ${MAX_ARG_LENGTH} characters`) }
  const timeout = positiveInt('timeout', values.timeout, DEFAULT_CALL_TIMEOUT)
  if (timeout > MAX_CALL_TIMEOUT) { throw new UsageError(`--timeout is at most ${MAX_CALL_TIMEOUT} ms`) }
  const bootstrap = checkMultiaddrs('bootstrap', values.bootstrap ?? [])
  return { target, targetText, service, method, args, timeout, cheapest, bootstrap }
}

export const command: Command = {
  name: 'call',
  summary: 'call a service on a remote node (wget-like): decloud call <multiaddr> <service>.<method> [args…], or --cheapest',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      'body-file': { type: 'string', short: 'f' },
      out: { type: 'string', short: 'o' },
      json: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      cheapest: { type: 'boolean', default: false },
      service: { type: 'string' },
      bootstrap: { type: 'string', multiple: true },
      'data-dir': { type: 'string' },
      pay: { type: 'string' },
      max: { type: 'string' }
    })
    const line = parseCallLine(values, positionals)
    let pay: { pay: string, max: string } | undefined
    if (values.pay != null) {
      try {
        parsePayOption(values.pay)
      } catch (e: any) {
        throw new UsageError(`--pay: ${String(e.message)}`)
      }
      if (values.max == null) { throw new UsageError('--pay needs --max SATS: the most this call may cost') }
      try {
        parseMax(values.max)
      } catch (e: any) {
        throw new UsageError(String(e.message))
      }
      pay = { pay: values.pay, max: values.max }
    } else if (values.max != null) {
      throw new UsageError('--max goes with --pay')
    }
    const { service, method, args, timeout } = line
    const body = await readBody(values['body-file'], MAX_BODY_SIZE)
    const dataDir = resolveDataDir(values['data-dir'])

    let running
    try {
      running = await findRunningNode(dataDir)
    } catch (err: any) {
      throw new CliError(`the node running for ${dataDir} refused the control request: ${err.message}`)
    }
    if (pay != null && running == null) {
      throw new UsageError(`--pay needs a running node for ${dataDir} (decloud node): its wallet pays, and it keeps deferred promises`)
    }
    const print = async (result: CallJson, answer: Uint8Array): Promise<number> => {
      if (result.payment != null && values.json !== true) {
        const p = result.payment
        if (p.kind === 'attached') { await err(`decloud: paid ${p.paid} sat (attached, txid ${p.txid ?? '?'})`) }
        // what the transaction really cost: a price below the dust limit is paid at it, plus the network fee
        if (p.kind === 'attached' && p.cost != null) { await err(`decloud: true cost ${p.cost.total} sat = ${p.cost.amount} sat to the seller (price ${p.cost.price} sat, dust minimum ${p.cost.dustMinimum} sat; any excess stays as credit at the seller) + ${p.cost.fee} sat fee`) }
        if (p.kind === 'defer') { await err(`decloud: promised ${p.promised} sat on tab ${p.deferId ?? '?'} (the node pays when it falls due)`) }
      }
      const code = await printCall({ name: `${service}.${method}`, result, body: answer, out: values.out, json: values.json === true })
      if (result.status !== 'ok' && result.acceptablePayment != null && pay == null && result.payment == null && values.json !== true) {
        // the seller wants money and the caller offered none: name the flags that pay
        await err(`decloud: this call costs ${result.acceptablePayment.amount} sat: add --pay auto --max SATS${running == null ? ` (with a node running for ${dataDir}: its wallet pays)` : ''}`)
      }
      return code
    }

    const call: CallInput = { service, method, args, body, ...pay }
    if (line.cheapest) {
      // the call's units of service: the body's bytes when there is a body (storage.put, sha256.hash)
      const usage = values['body-file'] != null ? BigInt(body.byteLength) : undefined
      const o = { usage, lookupTimeout: Math.min(CHEAPEST_LOOKUP_TIMEOUT, timeout), timeout }
      const picked = running != null
        ? await cheapestThroughNode(running.client, dataDir, call, { ...o, autoPay: pay == null })
        : await cheapestThroughSwarm(dataDir, line.bootstrap, call, o)
      await err(`decloud: cheapest seller ${picked.peerId} (${picked.price != null ? `${picked.price} sat` : 'no announced price'})`)
      return print(picked.result, picked.body)
    }
    if (line.target == null || line.targetText == null) { throw new UsageError('a target is required (see decloud call --help)') }
    const targetPeer = line.target.multiaddr != null ? line.target.multiaddr.getComponents().findLast(c => c.name === 'p2p')?.value : String(line.target.target)
    const selfPeer = running != null ? running.node.peerId : await ownPeerId(dataDir)
    if (targetPeer != null && targetPeer === selfPeer) {
      // the data dir's own node: libp2p refuses to dial its own peer id, so a
      // throw-away identity calls it over the network like any other caller
      if (pay != null) { throw new UsageError(`${line.targetText} is the node of ${dataDir} itself: a node does not pay itself; call it without --pay`) }
      const addrs = line.target.multiaddr != null ? [line.target.multiaddr] : (running?.node.addresses ?? []).map(a => multiaddr(a))
      const { result, body: answer } = await callDirect(dataDir, loopbackFirst(addrs), line.targetText, call, timeout, { ephemeral: true })
      return print(result, answer)
    }
    const { result, body: answer } = running != null
      ? await callThroughNode(running.client, dataDir, line.targetText, call, timeout)
      : await callDirect(dataDir, line.target.multiaddr != null ? [line.target.multiaddr] : bareIdNeedsNode(line.target), line.targetText, call, timeout)
    return print(result, answer)
  }
}

/** A call through the running node's control API */
async function callThroughNode (client: ControlClient, dataDir: string, targetText: string, call: CallInput, timeout: number): Promise<{ result: CallJson, body: Uint8Array }> {
  let result: CallJson
  try {
    result = await client.call({ target: targetText, service: call.service, method: call.method, args: call.args, body: Buffer.from(call.body).toString('base64'), timeout, ...payFields(call) })
  } catch (err: any) {
    if (err instanceof ControlApiError && ['payment-refused', 'insufficient-funds', 'payment-failed'].includes(err.type)) { throw new CliError(err.message) }
    if (err instanceof ControlApiError && ['transport', 'timeout', 'unreachable'].includes(err.type)) {
      throw new TransportError(`no answer from ${targetText}: ${err.message}`)
    }
    throw new CliError(`the node running for ${dataDir} refused the call: ${err.message}`)
  }
  return { result, body: Buffer.from(result.body, 'base64') }
}

function bareIdNeedsNode (target: Target): never {
  throw new UsageError(`a bare peer id needs a running node that knows its addresses; give a multiaddr (/ip4/…/tcp/…/p2p/${String(target.target)})`)
}

/** The peer id of the data dir's key, without creating one */
async function ownPeerId (dataDir: string): Promise<string | undefined> {
  const key = await readKey(dataDir).catch(() => undefined)
  return key != null ? peerIdFromPrivateKey(key).toString() : undefined
}

/** Loopback addresses first: the data dir's own node is on this machine */
function loopbackFirst (addrs: Multiaddr[]): Multiaddr[] {
  const loop = (a: Multiaddr): boolean => /^\/(ip4\/127\.|ip6\/::1\/)/.test(a.toString())
  return [...addrs.filter(loop), ...addrs.filter(a => !loop(a))]
}

/**
 * A call from a short-lived client node with the data dir's key (or, with
 * `ephemeral`, a throw-away one), to the first of `addrs` that answers
 */
async function callDirect (dataDir: string, addrs: Multiaddr[], targetText: string, call: CallInput, timeout: number, options: { ephemeral?: boolean } = {}): Promise<{ result: CallJson, body: Uint8Array }> {
  if (addrs.length === 0) { throw new CliError(`no address known for ${targetText}: give its multiaddr (/ip4/…/tcp/…/p2p/…)`) }
  // loaded only here: the control API path needs no libp2p
  const { withTransientNode } = await import('../transient.js')
  const res = await withTransientNode(dataDir, async (opencloud) => {
    const signal = AbortSignal.timeout(timeout)
    let last: any
    for (const ma of addrs.slice(0, 3)) {
      try {
        return await opencloud.call(ma, call, { signal })
      } catch (err: any) {
        if (signal.aborted) { throw new TransportError(`no answer from ${targetText} within ${timeout} ms`) }
        last = err
      }
    }
    throw new TransportError(`no answer from ${targetText}: ${String(last?.message ?? last)}`)
  }, options)
  return { result: callResultJson(res), body: res.body }
}

/** One OpenCloud call, as typed on the command line */
interface CallInput { service: string, method: string, args: string[], body: Uint8Array, pay?: string, max?: string }

function payFields (call: CallInput): { pay?: string, max?: string } {
  return call.pay != null ? { pay: call.pay, max: call.max } : {}
}
interface CheapestOptions {
  /** units of service of the call, for the ranking */
  usage?: bigint
  /** deadline of the seller lookup (ms) */
  lookupTimeout: number
  /** deadline of each call (ms) */
  timeout: number
  /** a seller that asks for payment is called again with `--pay auto --max CHEAPEST_DEFAULT_MAX` */
  autoPay?: boolean
}
/** The seller that answered and its answer */
interface Picked { peerId: string, price?: string, result: CallJson, body: Uint8Array }

function noSeller (service: string, elapsed: number): CliError {
  return new CliError(`no seller of ${service} found (searched the price book and the DHT for ${elapsed} ms)`)
}

function unreachable (service: string, skipped: Array<{ peerId: string, error: string }>): TransportError {
  return new TransportError(`no seller of ${service} answered: ${skipped.map(s => `${s.peerId}: ${s.error}`).join('; ')}`)
}

/**
 * --cheapest with a running node: its ranking (GET /v1/sellers), then the
 * sellers in order through POST /v1/call, the next one only when a seller
 * could not be reached or timed out.
 */
async function cheapestThroughNode (client: ControlClient, dataDir: string, call: CallInput, o: CheapestOptions): Promise<Picked> {
  let found: SellersJson
  try {
    found = await client.sellers({ service: call.service, method: call.method, units: o.usage, timeout: o.lookupTimeout })
  } catch (e: any) {
    if (e instanceof ControlApiError && e.status === 404) { throw new CliError(`the node running for ${dataDir} has no market to find sellers in: restart it with this version of decloud`) }
    if (e instanceof ControlApiError && ['timeout', 'unreachable'].includes(e.type)) { throw new TransportError(`the node running for ${dataDir} did not answer the seller lookup: ${e.message}`) }
    throw new CliError(`the node running for ${dataDir} could not look up sellers: ${e.message}`)
  }
  if (found.sellers.length === 0) { throw noSeller(call.service, found.elapsed) }
  const skipped: Array<{ peerId: string, error: string }> = []
  for (const seller of found.sellers.slice(0, CHEAPEST_ATTEMPTS)) {
    let result: CallJson
    try {
      result = await client.call({
        target: seller.addresses[0] ?? seller.peerId,
        service: call.service,
        method: call.method,
        args: call.args,
        body: Buffer.from(call.body).toString('base64'),
        timeout: o.timeout,
        ...payFields(call)
      })
    } catch (e: any) {
      if (e instanceof ControlApiError && ['payment-refused', 'insufficient-funds', 'payment-failed'].includes(e.type)) { throw new CliError(e.message) }
      if (e instanceof ControlApiError && (e.type === 'transport' || e.type === 'timeout')) {
        skipped.push({ peerId: seller.peerId, error: e.message })
        await err(`decloud: seller ${seller.peerId} did not answer (${e.message}); trying the next`)
        continue
      }
      if (e instanceof ControlApiError && e.type === 'unreachable') { throw new TransportError(`the node running for ${dataDir} went away: ${e.message}`) }
      throw new CliError(`the node running for ${dataDir} refused the call: ${e.message}`)
    }
    if (o.autoPay === true && call.pay == null && result.status !== 'ok' && result.acceptablePayment != null) {
      // the caller asked for the cheapest seller to buy from it: pay what it asks, within a bound
      await err(`decloud: seller ${seller.peerId} asks ${result.acceptablePayment.amount} sat: paying with --pay auto --max ${CHEAPEST_DEFAULT_MAX} (give --pay and --max to change)`)
      const paid = { ...call, pay: 'auto', max: CHEAPEST_DEFAULT_MAX.toString() }
      try {
        result = await client.call({
          target: seller.addresses[0] ?? seller.peerId,
          service: call.service,
          method: call.method,
          args: call.args,
          body: Buffer.from(call.body).toString('base64'),
          timeout: o.timeout,
          ...payFields(paid)
        })
      } catch (e: any) {
        if (e instanceof ControlApiError && ['transport', 'timeout', 'unreachable'].includes(e.type)) { throw new TransportError(`no answer from ${seller.peerId}: ${e.message}`) }
        throw new CliError(`paying ${seller.peerId} failed: ${e.message}`)
      }
    }
    return { peerId: seller.peerId, price: seller.price, result, body: Buffer.from(result.body, 'base64') }
  }
  throw unreachable(call.service, skipped)
}

/**
 * --cheapest without a running node: a short-lived swarm client with the data
 * dir's key joins through --bootstrap, ranks the sellers and calls them in
 * order (callCheapest), each with its own deadline.
 */
async function cheapestThroughSwarm (dataDir: string, bootstrap: string[], call: CallInput, o: CheapestOptions): Promise<Picked> {
  if (bootstrap.length === 0) {
    throw new UsageError(`no node is running for ${dataDir}: start one (decloud node --bootstrap …) or give --bootstrap MULTIADDR to find sellers`)
  }
  // loaded only here: the control API path needs no libp2p
  const { ensureDataDir, loadOrCreateKey } = await import('../../node/data-dir.js')
  const { withSwarmClient } = await import('../../node/transient.js')
  const { callCheapest } = await import('../../market/select.js')
  await ensureDataDir(dataDir)
  const privateKey = await loadOrCreateKey(dataDir)
  return withSwarmClient({ bootstrap, privateKey }, async (node) => {
    const start = Date.now()
    const candidates = await node.rankSellers(call.service, {
      method: call.method,
      usage: o.usage,
      timeout: o.lookupTimeout,
      // the data dir's own node (not running) may still be in the price book
      exclude: [node.peerId.toString()]
    })
    if (candidates.length === 0) { throw noSeller(call.service, Date.now() - start) }
    const skipped: Array<{ peerId: string, error: string }> = []
    for (const seller of candidates.slice(0, CHEAPEST_ATTEMPTS)) {
      // one seller at a time: callCheapest gives up on the whole list once its signal aborts
      const signal = AbortSignal.timeout(o.timeout)
      try {
        const { result } = await callCheapest(node.opencloud, [seller], call, { signal, maxAttempts: 1 })
        return { peerId: seller.peerId, price: seller.price?.toString(), result: callResultJson(result), body: result.body }
      } catch (e: any) {
        const error = signal.aborted ? `no answer within ${o.timeout} ms` : String(e?.message ?? e)
        skipped.push({ peerId: seller.peerId, error })
        await err(`decloud: seller ${seller.peerId} did not answer (${error}); trying the next`)
      }
    }
    throw unreachable(call.service, skipped)
  })
}
