import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { callResultJson } from '../../control/api.js'
import { ControlApiError, findRunningNode } from '../../control/client.js'
import { CHEAPEST_ATTEMPTS } from '../../market/select.js'
import { readKey } from '../../node/data-dir.js'
import { parseMax, parsePayOption } from '../../payments/buyer/pay-option.js'
import { MAX_ARG_LENGTH, MAX_ARGS, MAX_BODY_SIZE } from '../../protocols/opencloud/api/constants.js'
import { bodyUsage } from '../../protocols/opencloud/api/units.js'
import { isName } from '../../util/names.js'
import { readBody } from '../body.js'
import { CliError, TransportError, UsageError, commonOptions, commonUsage, err, parse, parseTimeout, readCommon } from '../command.js'
import { printCall } from '../render.js'
import type { CallJson, CallRequestJson } from '../../control/api.js'
import type { ControlClient } from '../../control/client.js'
import type { CallResult } from '../../protocols/opencloud/net/client.js'
import type { Command } from '../command.js'
import type { Multiaddr } from '@multiformats/multiaddr'

export const DEFAULT_CALL_TIMEOUT = 30_000
/** the control API's largest call timeout */
export const MAX_CALL_TIMEOUT = 300_000

/** Deadline of the seller lookup of --cheapest (ms), at most --timeout */
export const CHEAPEST_LOOKUP_TIMEOUT = 10_000
export { CHEAPEST_ATTEMPTS }
/**
 * --cheapest through a running node, without --pay, pays a seller that asks
 * for payment with `--pay auto --max` this much: a buyer asking for the
 * cheapest seller means to buy, and 1,000 sat covers a 4 MiB put at 250 sat
 * per MiB, far above the default prices (2 sat per GiB-month: 1 sat for any put)
 */
export const CHEAPEST_DEFAULT_MAX = 1_000n

const usage = `usage: decloud call <multiaddr> <service>.<method> [args…] [options]
       decloud call --cheapest [--service S] <service>.<method> [args…] [options]

Calls a service on a remote node over OpenCloud and prints the answer:
  sha256.hash        the hex digest (as sha256sum prints it)
  storage.put        the blob id (--json: with its lease, Merkle root and signed receipt)
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
${commonUsage('bootstrap')}
                         (with --cheapest; a call with a target dials it directly)
${commonUsage('data-dir')}
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
throw-away identity, as a stranger would (libp2p does not dial itself): the
running node's control API does it for any client. It cannot be paid for.

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
  const service = s.slice(0, dot)
  const method = s.slice(dot + 1)
  if (dot < 0 || !isName(service) || !isName(method)) { throw new UsageError(`"${s}" is not <service>.<method> (e.g. sha256.hash)`) }
  return { service, method }
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
  const timeout = parseTimeout(values.timeout, DEFAULT_CALL_TIMEOUT, MAX_CALL_TIMEOUT)
  const { bootstrap } = readCommon(values)
  return { target, targetText, service, method, args, timeout, cheapest, bootstrap }
}

export const command: Command = {
  name: 'call',
  summary: 'call a service on a remote node (wget-like): decloud call <multiaddr> <service>.<method> [args…], or --cheapest',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      ...commonOptions('data-dir', 'json', 'timeout', 'bootstrap'),
      'body-file': { type: 'string', short: 'f' },
      out: { type: 'string', short: 'o' },
      cheapest: { type: 'boolean', default: false },
      service: { type: 'string' },
      pay: { type: 'string' },
      max: { type: 'string' }
    })
    const line = parseCallLine(values, positionals)
    const { dataDir, json } = readCommon(values)
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
      if (result.payment != null && !json) {
        const p = result.payment
        if (p.kind === 'attached') { await err(`decloud: paid ${p.paid} sat (attached, txid ${p.txid ?? '?'})`) }
        // what the transaction really cost: a price below the dust limit is paid at it, plus the network fee
        if (p.kind === 'attached' && p.cost != null) { await err(`decloud: true cost ${p.cost.total} sat = ${p.cost.amount} sat to the seller (price ${p.cost.price} sat, dust minimum ${p.cost.dustMinimum} sat; any excess stays as credit at the seller) + ${p.cost.fee} sat fee`) }
        if (p.kind === 'defer') { await err(`decloud: promised ${p.promised} sat on tab ${p.deferId ?? '?'} (the node pays when it falls due)`) }
      }
      const code = await printCall({ name: `${service}.${method}`, result, body: answer, out: values.out, json })
      if (result.status !== 'ok' && result.acceptablePayment != null && pay == null && result.payment == null && !json) {
        // the seller wants money and the caller offered none: name the flags that pay
        await err(`decloud: this call costs ${result.acceptablePayment.amount} sat: add --pay auto --max SATS${running == null ? ` (with a node running for ${dataDir}: its wallet pays)` : ''}`)
      }
      return code
    }

    const request: CallRequestJson = { service, method, args, body: Buffer.from(body).toString('base64'), timeout, ...pay }
    if (line.cheapest) {
      // the call's units of service: the body's bytes when there is a body (sha256.hash), times the lease seconds for storage.put (default lease: 30 days)
      const units = values['body-file'] != null ? bodyUsage(service, method, args, body.byteLength) : undefined
      const lookupTimeout = Math.min(CHEAPEST_LOOKUP_TIMEOUT, timeout)
      const result = running != null
        ? await cheapestThroughNode(running.client, dataDir, { ...request, cheapest: true, lookupTimeout, ...(units != null ? { units: units.toString() } : {}) })
        : await cheapestThroughSwarm(dataDir, line.bootstrap, { service, method, args, body }, { units, lookupTimeout, timeout })
      for (const s of result.skipped ?? []) { await err(`decloud: seller ${s.peerId} did not answer (${s.error}); trying the next`) }
      const seller = result.seller as NonNullable<CallJson['seller']>
      await err(`decloud: cheapest seller ${seller.peerId} (${seller.price != null ? `${seller.price} sat` : 'no announced price'})`)
      return print(result, Buffer.from(result.body, 'base64'))
    }
    if (line.target == null || line.targetText == null) { throw new UsageError('a target is required (see decloud call --help)') }
    if (running != null) {
      // the running node calls; a call to itself it makes from a throw-away identity
      const result = await callThroughNode(running.client, dataDir, line.targetText, { ...request, target: line.targetText })
      return print(result, Buffer.from(result.body, 'base64'))
    }
    if (line.target.multiaddr == null) { return bareIdNeedsNode(line.target) }
    const result = await callDirect(dataDir, line.target.multiaddr, line.targetText, { service, method, args, body }, timeout)
    return print(result, Buffer.from(result.body, 'base64'))
  }
}

/** The control API's error as the CLI reports it */
function controlError (e: any, dataDir: string, targetText: string): CliError {
  if (!(e instanceof ControlApiError)) { return new CliError(String(e?.message ?? e)) }
  if (['payment-refused', 'insufficient-funds', 'payment-failed', 'no-seller'].includes(e.type)) { return new CliError(e.message) }
  // the request was built from the command line: what the node finds wrong in it, the command line asked
  if (e.type === 'bad-request') { return new UsageError(e.message) }
  if (['transport', 'timeout', 'unreachable'].includes(e.type)) { return new TransportError(`no answer from ${targetText}: ${e.message}`) }
  if (e.status === 404 && /no market/.test(e.message)) { return new CliError(`the node running for ${dataDir} has no market to find sellers in: ${e.message}`) }
  return new CliError(`the node running for ${dataDir} refused the call: ${e.message}`)
}

/** A call through the running node's control API */
async function callThroughNode (client: ControlClient, dataDir: string, targetText: string, request: CallRequestJson): Promise<CallJson> {
  try {
    return await client.call(request)
  } catch (e: any) {
    throw controlError(e, dataDir, targetText)
  }
}

/**
 * --cheapest with a running node: the node ranks the sellers and calls them
 * in order (POST /v1/call with cheapest). Without --pay, a seller that asks
 * for payment is called again, paid with `--pay auto --max CHEAPEST_DEFAULT_MAX`:
 * a buyer asking for the cheapest seller means to buy.
 */
async function cheapestThroughNode (client: ControlClient, dataDir: string, request: CallRequestJson): Promise<CallJson> {
  const sellersOf = `the sellers of ${request.service}`
  const result = await callThroughNode(client, dataDir, sellersOf, request)
  const seller = result.seller
  if (request.pay != null || result.status === 'ok' || result.acceptablePayment == null || seller == null) { return result }
  await err(`decloud: seller ${seller.peerId} asks ${result.acceptablePayment.amount} sat: paying with --pay auto --max ${CHEAPEST_DEFAULT_MAX} (give --pay and --max to change)`)
  const { cheapest, lookupTimeout, units, ...plain } = request
  const paid = await callThroughNode(client, dataDir, seller.peerId, { ...plain, target: seller.addresses[0] ?? seller.peerId, pay: 'auto', max: CHEAPEST_DEFAULT_MAX.toString() })
  return { ...paid, seller, skipped: result.skipped }
}

/**
 * --cheapest without a running node: a short-lived swarm client with the data
 * dir's key joins through --bootstrap, ranks the sellers and calls the
 * cheapest that answers (callCheapest, each seller within --timeout).
 */
async function cheapestThroughSwarm (dataDir: string, bootstrap: string[], call: { service: string, method: string, args: string[], body: Uint8Array }, o: { units?: bigint, lookupTimeout: number, timeout: number }): Promise<CallJson> {
  if (bootstrap.length === 0) {
    throw new UsageError(`no node is running for ${dataDir}: start one (decloud node --bootstrap …) or give --bootstrap MULTIADDR to find sellers`)
  }
  // loaded only here: the control API path needs no libp2p
  const { ensureDataDir, loadOrCreateKey } = await import('../../node/data-dir.js')
  const { withSwarmClient } = await import('../../node/transient.js')
  const { callCheapest, NoSellerReachedError } = await import('../../market/select.js')
  await ensureDataDir(dataDir)
  const privateKey = await loadOrCreateKey(dataDir)
  return withSwarmClient({ bootstrap, privateKey }, async (node) => {
    const start = Date.now()
    // the data dir's own node (not running) may still be in the price book: rankSellers leaves this key out
    const ranked = await node.rankSellers(call.service, { method: call.method, usage: o.units, timeout: o.lookupTimeout })
    if (ranked.length === 0) { throw new CliError(`no seller of ${call.service} found (searched the price book and the DHT for ${Date.now() - start} ms)`) }
    try {
      const { seller, result, skipped } = await callCheapest(node.opencloud, ranked, call, { timeout: o.timeout })
      return { ...callResultJson(result), seller: { peerId: seller.peerId, addresses: seller.addresses, ...(seller.price != null ? { price: seller.price.toString() } : {}) }, skipped }
    } catch (e: any) {
      if (e instanceof NoSellerReachedError) { throw new TransportError(`no seller of ${call.service} answered: ${e.skipped.map(s => `${s.peerId}: ${s.error}`).join('; ')}`) }
      throw e
    }
  })
}

function bareIdNeedsNode (target: Target): never {
  throw new UsageError(`a bare peer id needs a running node that knows its addresses; give a multiaddr (/ip4/…/tcp/…/p2p/${String(target.target)})`)
}

/** The peer id of the data dir's key, without creating one */
async function ownPeerId (dataDir: string): Promise<string | undefined> {
  const key = await readKey(dataDir).catch(() => undefined)
  return key != null ? peerIdFromPrivateKey(key).toString() : undefined
}

/**
 * A call without a running node: from a short-lived client node with the
 * data dir's key, or, when the target has that very key (a node of this data
 * dir whose control API is not found), from a throw-away identity
 */
async function callDirect (dataDir: string, target: Multiaddr, targetText: string, call: { service: string, method: string, args: string[], body: Uint8Array }, timeout: number): Promise<CallJson> {
  // loaded only here: the control API path needs no libp2p
  const { withTransientNode } = await import('../transient.js')
  const { callAsStranger } = await import('../../node/stranger.js')
  const signal = AbortSignal.timeout(timeout)
  const self = target.getComponents().findLast(c => c.name === 'p2p')?.value === await ownPeerId(dataDir)
  let res: CallResult
  try {
    res = self
      ? await callAsStranger([target], call, { signal })
      : await withTransientNode(dataDir, async (opencloud) => opencloud.call(target, call, { signal }))
  } catch (e: any) {
    if (signal.aborted) { throw new TransportError(`no answer from ${targetText} within ${timeout} ms`) }
    throw new TransportError(`no answer from ${targetText}: ${String(e?.message ?? e)}`)
  }
  return callResultJson(res)
}
