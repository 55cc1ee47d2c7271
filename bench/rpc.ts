/* eslint-disable no-console */
/**
 * RPC round trips per second between two real libp2p nodes over 127.0.0.1 TCP
 * (noise + yamux):
 *
 * - OpenCloud: `sha256.hash` on a small body through `opencloud.call` (signed
 * request, server-issued nonce, signed response, verified);
 * - echo: a bare length-prefixed echo protocol (`/bench/echo/1.0.0`) carrying
 * the same body, on the same connection.
 *
 * Sequential calls (one stream) and N concurrent callers (N streams), the two
 * alternated over several rounds; prints each round, the medians and the
 * ratio OpenCloud / echo. Target: ≥ 0.6. Usage: `node dist/bench/rpc.js --help`.
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

const TARGET = 0.6

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

interface ModeResult {
  mode: string
  concurrency: number
  /** round trips/s per round */
  opencloud: number[]
  echo: number[]
  ratios: number[]
  /** CPU µs of this process per round trip, per round */
  opencloudCpu: number[]
  echoCpu: number[]
}

async function main (): Promise<void> {
  console.log(`# RPC round trips/s: OpenCloud sha256.hash vs length-prefixed echo, ${fmt(size)}-byte body`)
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

    const opencloud = async (): Promise<void> => {
      const res = await client.node.opencloud.call(target, { service: 'sha256', method: 'hash', body })
      if (!res.ok || res.body.byteLength !== 32) { throw new Error(`sha256.hash answered ${res.path} ${res.detail}`) }
    }

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
      await rate(warmupMs, m.concurrency, opencloud)
      await rate(warmupMs, m.concurrency, echo)
      const r: ModeResult = { ...m, opencloud: [], echo: [], ratios: [], opencloudCpu: [], echoCpu: [] }
      for (let round = 0; round < rounds; round++) {
        // alternate the order (ab, ba, ab…) so slow drift in the machine's load favours neither
        let a: RateResult
        let b: RateResult
        if (round % 2 === 0) {
          a = await rate(durationMs, m.concurrency, opencloud)
          b = await rate(durationMs, m.concurrency, echo)
        } else {
          b = await rate(durationMs, m.concurrency, echo)
          a = await rate(durationMs, m.concurrency, opencloud)
        }
        r.opencloud.push(a.perSecond)
        r.echo.push(b.perSecond)
        r.ratios.push(a.perSecond / b.perSecond)
        r.opencloudCpu.push(a.cpuPerOp)
        r.echoCpu.push(b.cpuPerOp)
        console.log(`  ${m.mode}, round ${round + 1}: OpenCloud ${fmt(a.perSecond)}/s (${fmt(a.cpuPerOp)} µs CPU), echo ${fmt(b.perSecond)}/s (${fmt(b.cpuPerOp)} µs CPU), ratio ${fmt(a.perSecond / b.perSecond, 2)}`)
      }
      results.push(r)
    }

    console.log()
    const rows: string[][] = []
    for (const r of results) {
      r.opencloud.forEach((a, i) => {
        rows.push([`${r.mode}, round ${i + 1}`, fmt(a), fmt(r.echo[i]), fmt(r.ratios[i], 2), fmt(r.opencloudCpu[i]), fmt(r.echoCpu[i])])
      })
      rows.push([`${r.mode}, median`, fmt(median(r.opencloud)), fmt(median(r.echo)), fmt(median(r.ratios), 2), fmt(median(r.opencloudCpu)), fmt(median(r.echoCpu))])
      rows.push([`${r.mode}, spread`, `${fmt(spread(r.opencloud))}%`, `${fmt(spread(r.echo))}%`, `${fmt(spread(r.ratios))}%`, `${fmt(spread(r.opencloudCpu))}%`, `${fmt(spread(r.echoCpu))}%`])
    }
    console.log(table(['round trips/s', 'OpenCloud', 'echo', 'OC/echo', 'OC CPU µs/rt', 'echo CPU µs/rt'], rows))
    console.log(twoProcess ? '(CPU: this process only, i.e. the client side)' : '(CPU: this process, i.e. client and server together)')
    console.log()
    for (const r of results) {
      // the headline is the median of the per-round ratios: a and b of one round saw the same load
      const ratio = median(r.ratios)
      const cpuRatio = median(r.echoCpu) / median(r.opencloudCpu)
      console.log(`${r.mode}: OpenCloud/echo = ${fmt(ratio, 2)} (ratio of medians ${fmt(median(r.opencloud) / median(r.echo), 2)}; by CPU time ${fmt(cpuRatio, 2)}), target >= ${TARGET}: ${ratio >= TARGET ? 'met' : 'NOT met'}`)
    }
    const stats = server.stats?.()
    if (stats != null) {
      const refresh = stats.byStatus[String(Status.REFRESH_NONCE)] ?? 0
      console.log(`server answered ${fmt(stats.requests)} OpenCloud requests, ${fmt(refresh)} of them refresh-nonce`)
    }
    if (opts.json === true) {
      console.log(JSON.stringify({
        bench: 'rpc',
        node: process.version,
        date: new Date().toISOString(),
        layout: server.layout,
        verifyResponses,
        size,
        durationMs,
        results: results.map(r => ({ ...r, medianOpencloud: median(r.opencloud), medianEcho: median(r.echo), ratio: median(r.ratios), medianOpencloudCpu: median(r.opencloudCpu), medianEchoCpu: median(r.echoCpu) }))
      }))
    }
  } finally {
    await Promise.all(echoStreams.map(async s => s.close({ signal: AbortSignal.timeout(1_000) }).catch(() => { s.abort(new Error('benchmark done')) })))
    await client.destroy()
    await server.stop()
  }
}

runBenchmark(main)
