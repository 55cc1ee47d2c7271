/* eslint-disable no-console */
/**
 * RPC round trips per second between two real libp2p nodes over 127.0.0.1 TCP
 * (noise + yamux):
 *
 * - OpenCloud unsigned: `sha256.hash` on a small body through `opencloud.call`
 * as a free call goes (no request signature, unsigned response; the noise
 * channel authenticates both ends), with a server-issued nonce;
 * - OpenCloud signed: the same call signed both ways (`sign`, `signResponse`),
 * as a paid call or any call kept as evidence goes;
 * - echo: a bare length-prefixed echo protocol (`/bench/echo/1.0.0`) carrying
 * the same body, on the same connection.
 *
 * Sequential calls (one stream) and N concurrent callers (N streams), the
 * three rotated over several rounds; prints each round, the medians and the
 * ratios to echo. Targets (docs/benchmarks.md): unsigned ≥ 0.6, signed ≥ 0.4.
 * Usage: `node dist/bench/rpc.js --help`.
 */
import { randomBytes } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { sha256 } from '../src/protocols/opencloud/api/signing.js'
import { Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { flags, fmt, machine, median, parsePositive, parseSize, rate, runBenchmark, spread, startBenchNode, table } from './common.js'
import { ECHO_PROTOCOL, MAX_ECHO_MESSAGE, launchServer } from './server.js'
import type { RateResult } from './common.js'

const USAGE = `usage: node dist/bench/rpc.js [options]
  --duration S      seconds per measurement (default 4)
  --rounds N        rounds of (OpenCloud, echo) per mode (default 3)
  --concurrency N   concurrent callers in the second mode (default 8; 1 skips it)
  --size BYTES      request body size, e.g. 1024, 1k, 64k (default 1k)
  --warmup S        seconds of warm-up per protocol and mode (default 1)
  --two-process     run the server node in a child process
  --verify-responses, --no-verify-responses
                    make the client verify (or not) every response signature as
                    it arrives; without either, the node's default applies
  --json            also print the results as one JSON line`

/** least ratio to echo, per kind of call */
const TARGETS = { unsigned: 0.6, signed: 0.4 }

const opts = flags({
  duration: { type: 'string' },
  rounds: { type: 'string' },
  concurrency: { type: 'string' },
  size: { type: 'string' },
  warmup: { type: 'string' },
  'two-process': { type: 'boolean' },
  'verify-responses': { type: 'boolean' },
  'no-verify-responses': { type: 'boolean' },
  json: { type: 'boolean' }
}, USAGE)

const durationMs = parsePositive('duration', opts.duration as string | undefined, 4) * 1000
const rounds = parsePositive('rounds', opts.rounds as string | undefined, 3, true)
const concurrency = parsePositive('concurrency', opts.concurrency as string | undefined, 8, true)
const size = parseSize((opts.size as string | undefined) ?? '1k')
const warmupMs = parsePositive('warmup', opts.warmup as string | undefined, 1) * 1000
const twoProcess = opts['two-process'] === true
if (opts['verify-responses'] === true && opts['no-verify-responses'] === true) {
  console.error('--verify-responses and --no-verify-responses exclude each other')
  process.exit(2)
}
/** undefined: the node's default */
let verifyResponses: boolean | undefined
if (opts['verify-responses'] === true) { verifyResponses = true }
if (opts['no-verify-responses'] === true) { verifyResponses = false }
const VERIFY_LABEL = { true: 'yes', false: 'no', undefined: 'node default' }[String(verifyResponses) as 'true' | 'false' | 'undefined']
if (size > MAX_ECHO_MESSAGE) {
  console.error(`--size must be at most ${MAX_ECHO_MESSAGE} bytes`)
  process.exit(2)
}

type Kind = 'unsigned' | 'signed'
const KINDS: Kind[] = ['unsigned', 'signed']

interface Series {
  /** round trips/s per round */
  perSecond: number[]
  /** CPU µs of this process per round trip, per round */
  cpu: number[]
  /** ratio to the echo of the same round */
  ratios: number[]
}

interface ModeResult {
  mode: string
  concurrency: number
  echo: Series
  unsigned: Series
  signed: Series
}

const series = (): Series => ({ perSecond: [], cpu: [], ratios: [] })

async function main (): Promise<void> {
  console.log(`# RPC round trips/s: OpenCloud sha256.hash (unsigned, signed) vs length-prefixed echo, ${fmt(size)}-byte body`)
  console.log(`# ${machine()}`)
  const server = await launchServer(twoProcess)
  const client = await startBenchNode({ opencloud: { verifyResponses } })
  const echoStreams: Array<Awaited<ReturnType<typeof client.node.libp2p.dialProtocol>>> = []
  try {
    console.log(`# layout: ${server.layout}; ${durationMs / 1000} s per measurement, ${rounds} rounds, warm-up ${warmupMs / 1000} s; response signatures verified by the client: ${VERIFY_LABEL}`)
    // a multiaddr string, as the CLI and most callers pass it
    const target = server.addr
    const body = randomBytes(size)
    const expected = Buffer.from(sha256(body))

    const first = await client.node.opencloud.call(target, { service: 'sha256', method: 'hash', body })
    if (!first.ok || !expected.equals(first.body)) { throw new Error(`sha256.hash answered ${first.path} ${first.detail}`) }

    const call = (kind: Kind) => async (): Promise<void> => {
      const res = await client.node.opencloud.call(target, kind === 'signed' ? { service: 'sha256', method: 'hash', body, sign: true, signResponse: true } : { service: 'sha256', method: 'hash', body })
      if (!res.ok || res.body.byteLength !== 32) { throw new Error(`sha256.hash answered ${res.path} ${res.detail}`) }
      if (res.signed !== (kind === 'signed')) { throw new Error(`a ${kind} call was answered ${res.signed ? 'signed' : 'unsigned'}`) }
    }
    const calls = { unsigned: call('unsigned'), signed: call('signed') }

    const lanes = Math.max(1, concurrency)
    for (let i = 0; i < lanes; i++) {
      echoStreams.push(await client.node.libp2p.dialProtocol(multiaddr(target), ECHO_PROTOCOL))
    }
    const echoLp = echoStreams.map(s => lpStream(s, { maxDataLength: MAX_ECHO_MESSAGE, maxBufferSize: MAX_ECHO_MESSAGE + 16 }))
    const echo = async (w: number): Promise<void> => {
      const lp = echoLp[w]
      await lp.write(body)
      const reply = await lp.read()
      if (reply.byteLength !== body.byteLength) { throw new Error('echo answered the wrong length') }
    }

    const modes = [{ mode: 'sequential, 1 stream', concurrency: 1 }]
    if (concurrency > 1) { modes.push({ mode: `${concurrency} concurrent callers`, concurrency }) }

    const results: ModeResult[] = []
    for (const m of modes) {
      await rate(warmupMs, m.concurrency, calls.unsigned)
      await rate(warmupMs, m.concurrency, calls.signed)
      await rate(warmupMs, m.concurrency, echo)
      const r: ModeResult = { ...m, echo: series(), unsigned: series(), signed: series() }
      const runs: Array<['echo' | Kind, (w: number) => Promise<void>]> = [['echo', echo], ['unsigned', calls.unsigned], ['signed', calls.signed]]
      for (let round = 0; round < rounds; round++) {
        // rotate the order (abc, bca, cab…) so slow drift in the machine's load favours none
        const got: Partial<Record<'echo' | Kind, RateResult>> = {}
        for (let k = 0; k < runs.length; k++) {
          const [name, fn] = runs[(round + k) % runs.length]
          got[name] = await rate(durationMs, m.concurrency, fn)
        }
        const e = got.echo as RateResult
        r.echo.perSecond.push(e.perSecond)
        r.echo.cpu.push(e.cpuPerOp)
        const line = [`  ${m.mode}, round ${round + 1}: echo ${fmt(e.perSecond)}/s (${fmt(e.cpuPerOp)} µs CPU)`]
        for (const kind of KINDS) {
          const a = got[kind] as RateResult
          r[kind].perSecond.push(a.perSecond)
          r[kind].cpu.push(a.cpuPerOp)
          r[kind].ratios.push(a.perSecond / e.perSecond)
          line.push(`${kind} ${fmt(a.perSecond)}/s (${fmt(a.cpuPerOp)} µs CPU, ratio ${fmt(a.perSecond / e.perSecond, 2)})`)
        }
        console.log(line.join(', '))
      }
      results.push(r)
    }

    console.log()
    const rows: string[][] = []
    for (const r of results) {
      for (const kind of KINDS) {
        const s = r[kind]
        s.perSecond.forEach((a, i) => {
          rows.push([`${r.mode}, ${kind}, round ${i + 1}`, fmt(a), fmt(r.echo.perSecond[i]), fmt(s.ratios[i], 2), fmt(s.cpu[i]), fmt(r.echo.cpu[i])])
        })
        rows.push([`${r.mode}, ${kind}, median`, fmt(median(s.perSecond)), fmt(median(r.echo.perSecond)), fmt(median(s.ratios), 2), fmt(median(s.cpu)), fmt(median(r.echo.cpu))])
        rows.push([`${r.mode}, ${kind}, spread`, `${fmt(spread(s.perSecond))}%`, `${fmt(spread(r.echo.perSecond))}%`, `${fmt(spread(s.ratios))}%`, `${fmt(spread(s.cpu))}%`, `${fmt(spread(r.echo.cpu))}%`])
      }
    }
    console.log(table(['round trips/s', 'OpenCloud', 'echo', 'OC/echo', 'OC CPU µs/rt', 'echo CPU µs/rt'], rows))
    console.log(twoProcess ? '(CPU: this process only, i.e. the client side)' : '(CPU: this process, i.e. client and server together)')
    console.log()
    for (const r of results) {
      for (const kind of KINDS) {
        // the headline is the median of the per-round ratios: the calls of one round saw the same load
        const ratio = median(r[kind].ratios)
        const cpuRatio = median(r.echo.cpu) / median(r[kind].cpu)
        console.log(`${r.mode}, ${kind}: OpenCloud/echo = ${fmt(ratio, 2)} (ratio of medians ${fmt(median(r[kind].perSecond) / median(r.echo.perSecond), 2)}; by CPU time ${fmt(cpuRatio, 2)}), target >= ${TARGETS[kind]}: ${ratio >= TARGETS[kind] ? 'met' : 'NOT met'}`)
      }
    }
    const stats = server.stats?.()
    if (stats != null) {
      const refresh = stats.byStatus[String(Status.REFRESH_NONCE)] ?? 0
      console.log(`server answered ${fmt(stats.requests)} OpenCloud requests, ${fmt(refresh)} of them refresh-nonce`)
    }
    if (opts.json === true) {
      const sum = (s: Series): object => ({ ...s, median: median(s.perSecond), ratio: median(s.ratios), medianCpu: median(s.cpu) })
      console.log(JSON.stringify({
        bench: 'rpc',
        node: process.version,
        date: new Date().toISOString(),
        layout: server.layout,
        verifyResponses,
        size,
        durationMs,
        results: results.map(r => ({ mode: r.mode, concurrency: r.concurrency, echo: sum(r.echo), unsigned: sum(r.unsigned), signed: sum(r.signed) }))
      }))
    }
  } finally {
    await Promise.all(echoStreams.map(async s => s.close({ signal: AbortSignal.timeout(1_000) }).catch(() => { s.abort(new Error('benchmark done')) })))
    await client.destroy()
    await server.stop()
  }
}

runBenchmark(main)
