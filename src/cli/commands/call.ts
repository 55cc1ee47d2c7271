import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { callResultJson } from '../../control/api.js'
import { ControlApiError, findRunningNode } from '../../control/client.js'
import { MAX_ARG_LENGTH, MAX_ARGS, MAX_BODY_SIZE } from '../../protocols/opencloud/constants.js'
import { readBody } from '../body.js'
import { CliError, TransportError, UsageError, parse, positiveInt, resolveDataDir } from '../command.js'
import { printCall } from '../render.js'
import type { CallJson } from '../../control/api.js'
import type { Command } from '../command.js'
import type { Multiaddr } from '@multiformats/multiaddr'

export const DEFAULT_CALL_TIMEOUT = 30_000
/** the control API's largest call timeout */
export const MAX_CALL_TIMEOUT = 300_000

const usage = `usage: decloud call <multiaddr> <service>.<method> [args…] [options]

Calls a service on a remote node over OpenCloud and prints the answer:
  sha256.hash        the hex digest (as sha256sum prints it)
  storage.put        the blob id
  JSON answers       the JSON (info, methods, quote, stat, delete…)
  other answers      the raw bytes (use --out FILE, or redirect stdout)

When a node is running for the data dir, the call goes through its control
API (the node's identity and connections); otherwise a short-lived client
node with the data dir's key makes it.

options:
  --body-file F, -f F  send the content of F as the request body; - reads stdin
  --out G, -o G        write the answer's body to G (- for raw bytes to stdout)
  --json               print the whole response as one JSON object:
                       {status, code, detail, body (base64), bodyHex (≤ 64 bytes),
                        acceptablePayment, signer, peer}
  --timeout MS         give up after MS milliseconds, dial included
                       (default ${DEFAULT_CALL_TIMEOUT}, at most ${MAX_CALL_TIMEOUT})
  --data-dir DIR       the caller's data dir (default $DECLOUD_DATA_DIR or ~/.decloud)

exit codes: 0 ok · 1 the node answered with another status (printed on stderr)
            or the command failed · 2 bad command line · 3 no answer (dial, timeout)

examples:
  decloud call /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo… sha256.hash --body-file photo.jpg
  decloud call $ADDR storage.put -f photo.jpg
  decloud call $ADDR storage.get <id> --out copy.jpg
  decloud call $ADDR storage.quote put 1048576
  echo hello | decloud call $ADDR sha256.hash --body-file -
`

function parseTarget (s: string): { target: Multiaddr | string, multiaddr?: Multiaddr } {
  if (s.startsWith('/')) {
    try {
      const ma = multiaddr(s)
      return { target: ma, multiaddr: ma }
    } catch (err: any) {
      throw new UsageError(`"${s}" is not a valid multiaddr: ${err.message}`)
    }
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
  if (dot <= 0 || dot === s.length - 1) throw new UsageError(`"${s}" is not <service>.<method> (e.g. sha256.hash)`)
  return { service: s.slice(0, dot), method: s.slice(dot + 1) }
}

export const command: Command = {
  name: 'call',
  summary: 'call a service on a remote node (wget-like): decloud call <multiaddr> <service>.<method> [args…]',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      'body-file': { type: 'string', short: 'f' },
      out: { type: 'string', short: 'o' },
      json: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      'data-dir': { type: 'string' }
    })
    if (positionals.length < 2) throw new UsageError('usage: decloud call <multiaddr> <service>.<method> [args…] (see decloud call --help)')
    const [targetText, nameText, ...args] = positionals
    const { target, multiaddr: ma } = parseTarget(targetText)
    const { service, method } = parseName(nameText)
    if (args.length > MAX_ARGS) throw new UsageError(`at most ${MAX_ARGS} arguments`)
    if (args.some(a => a.length > MAX_ARG_LENGTH)) throw new UsageError(`an argument is longer than ${MAX_ARG_LENGTH} characters`)
    const timeout = positiveInt('timeout', values.timeout, DEFAULT_CALL_TIMEOUT)
    if (timeout > MAX_CALL_TIMEOUT) throw new UsageError(`--timeout is at most ${MAX_CALL_TIMEOUT} ms`)
    const body = await readBody(values['body-file'], MAX_BODY_SIZE)
    const dataDir = resolveDataDir(values['data-dir'])

    let running
    try {
      running = await findRunningNode(dataDir)
    } catch (err: any) {
      throw new CliError(`the node running for ${dataDir} refused the control request: ${err.message}`)
    }

    let result: CallJson
    let answer: Uint8Array
    if (running != null) {
      try {
        result = await running.client.call({ target: targetText, service, method, args, body: Buffer.from(body).toString('base64'), timeout })
      } catch (err: any) {
        if (err instanceof ControlApiError && ['transport', 'timeout', 'unreachable'].includes(err.type)) {
          throw new TransportError(`no answer from ${targetText}: ${err.message}`)
        }
        throw new CliError(`the node running for ${dataDir} refused the call: ${err.message}`)
      }
      answer = Buffer.from(result.body, 'base64')
    } else {
      if (ma == null) {
        throw new UsageError(`a bare peer id needs a running node that knows its addresses; give a multiaddr (/ip4/…/tcp/…/p2p/${String(target)})`)
      }
      // loaded only here: the control API path needs no libp2p
      const { withTransientNode } = await import('../transient.js')
      const res = await withTransientNode(dataDir, async (opencloud) => {
        const signal = AbortSignal.timeout(timeout)
        try {
          return await opencloud.call(ma, { service, method, args, body }, { signal })
        } catch (err: any) {
          if (signal.aborted) throw new TransportError(`no answer from ${targetText} within ${timeout} ms`)
          throw new TransportError(`no answer from ${targetText}: ${String(err?.message ?? err)}`)
        }
      })
      result = callResultJson(res)
      answer = res.body
    }
    return printCall({ name: `${service}.${method}`, result, body: answer, out: values.out, json: values.json === true })
  }
}
