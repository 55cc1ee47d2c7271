/* eslint-disable no-console */
/**
 * Fair service under floods (issue 13 §2): a well-behaved peer makes
 * `sha256.hash` calls in lockstep on one stream, alone, then while one other
 * peer floods the server on 64 streams, then while 8 other peers each flood
 * on 16 streams. Flood requests carry a stale nonce (signed once, sent again
 * and again: the cheapest request to send, and one the server must verify
 * before it can tell). The server and the flooders run in child processes
 * (`fairness-child.ts`), so the measured caller's CPU is its own.
 *
 * Prints the caller's calls/s, its ratio to the unloaded rate measured in the
 * same run (targets: >= 0.5 with the 64-stream flooder, >= 0.3 with 8 x 16),
 * and what the flooders got: requests that went through the pipeline per
 * second, against what the server's per-peer rate lets them have, and
 * requests refused before decoding. Not a test: numbers are indicative on a
 * loaded machine. Usage: `node dist/bench/fairness.js --help`.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { flags, fmt, machine, parsePositive, rate, runBenchmark, startBenchNode, table } from './common.js'
import type { ChildProcess } from 'node:child_process'

const USAGE = `usage: node dist/bench/fairness.js [options]
  --duration S      seconds per measurement (default 5)
  --warmup S        seconds of flooding before a measurement (default 1)
  --rate N          the server's per-peer requests/s (fairness.requestsPerSecond; default 200,
                    the default policy's per-peer rate); 0: no metering
  --no-fairness     serve every stream as it comes (fairness: false), the behaviour before
  --json            also print the results as one JSON line`

const opts = flags({
  duration: { type: 'string' },
  warmup: { type: 'string' },
  rate: { type: 'string' },
  'no-fairness': { type: 'boolean' },
  json: { type: 'boolean' }
}, USAGE)

const durationMs = parsePositive('duration', opts.duration as string | undefined, 5) * 1000
const warmupMs = parsePositive('warmup', opts.warmup as string | undefined, 1) * 1000
const perPeerRate = opts.rate == null ? 200 : Number(opts.rate)
if (!Number.isFinite(perPeerRate) || perPeerRate < 0) {
  console.error('--rate must be a non-negative number')
  process.exit(2)
}
const fair = opts['no-fairness'] !== true
const CHILD = fileURLToPath(new URL('./fairness-child.js', import.meta.url))

/** Starts a child and waits for its first message */
async function child (args: string[]): Promise<{ proc: ChildProcess, first: any }> {
  const proc = fork(CHILD, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const first = await new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`child ${args[0]} did not start within 60 s`)) }, 60_000)
    proc.once('message', (m) => { clearTimeout(timer); resolve(m) })
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child ${args[0]} exited with code ${code}`)) })
  }).catch((err) => {
    proc.kill()
    throw err
  })
  return { proc, first }
}

/** Sends `cmd` and waits for the answer carrying `key` */
async function ask (proc: ChildProcess, cmd: string, key: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no answer to ${cmd}`)) }, 20_000)
    const on = (m: any): void => {
      if (m?.[key] == null) { return }
      clearTimeout(timer)
      proc.off('message', on)
      resolve(m[key])
    }
    proc.on('message', on)
    proc.send({ cmd })
  })
}

async function stopChild (proc: ChildProcess): Promise<void> {
  if (proc.exitCode != null) { return }
  const exited = new Promise<void>(resolve => { proc.once('exit', () => { resolve() }) })
  if (proc.connected) { proc.send({ cmd: 'stop' }) }
  const timer = setTimeout(() => { proc.kill() }, 10_000)
  await exited
  clearTimeout(timer)
}

interface Scenario {
  name: string
  peers: number
  streams: number
  target?: number
}

interface Row {
  scenario: string
  calls: number
  ratio: number
  target?: number
  floodServed: number
  floodRefused: number
  floodAllowed?: number
}

const SERVED = (counts: Record<string, number>): number =>
  Object.entries(counts).filter(([s]) => s !== String(Status.RATE_LIMITED) && s !== 'reset' && s !== 'stream-refused').reduce((a, [, n]) => a + n, 0)
const REFUSED = (counts: Record<string, number>): number =>
  (counts[String(Status.RATE_LIMITED)] ?? 0) + (counts.reset ?? 0) + (counts['stream-refused'] ?? 0)

async function main (): Promise<void> {
  const serverOptions = { fairness: fair ? (perPeerRate > 0 ? { requestsPerSecond: perPeerRate, requestBurst: 2 * perPeerRate } : {}) : false }
  console.log('# fairness: a lockstep sha256.hash caller on one stream, alone and beside flooders (stale-nonce requests)')
  console.log(`# ${machine()}`)
  console.log(`# server opencloud options: ${JSON.stringify(serverOptions)}; ${durationMs / 1000} s per measurement after ${warmupMs / 1000} s of flooding`)
  const server = await child(['server', JSON.stringify(serverOptions)])
  const addr = String(server.first.addr)
  const client = await startBenchNode()
  const rows: Row[] = []
  try {
    const body = randomBytes(1024)
    const call = async (): Promise<void> => {
      const res = await client.node.opencloud.call(addr, { service: 'sha256', method: 'hash', body })
      if (!res.ok) { throw new Error(`sha256.hash answered ${res.path} ${res.detail}`) }
    }
    await rate(warmupMs, 1, call)
    const alone = (await rate(durationMs, 1, call)).perSecond
    rows.push({ scenario: 'alone', calls: alone, ratio: 1, floodServed: 0, floodRefused: 0 })
    console.log(`  alone: ${fmt(alone)} calls/s`)

    const scenarios: Scenario[] = [
      { name: '1 flooder x 64 streams', peers: 1, streams: 64, target: 0.5 },
      { name: '8 flooders x 16 streams', peers: 8, streams: 16, target: 0.3 }
    ]
    for (const s of scenarios) {
      const flooder = await child(['flood', addr, String(s.peers), String(s.streams)])
      try {
        await new Promise(resolve => setTimeout(resolve, warmupMs))
        const before = await ask(flooder.proc, 'count', 'counts')
        const start = performance.now()
        const calls = (await rate(durationMs, 1, call)).perSecond
        const after = await ask(flooder.proc, 'count', 'counts')
        const seconds = (performance.now() - start) / 1000
        const row: Row = {
          scenario: s.name,
          calls,
          ratio: calls / alone,
          target: s.target,
          floodServed: (SERVED(after) - SERVED(before)) / seconds,
          floodRefused: (REFUSED(after) - REFUSED(before)) / seconds,
          floodAllowed: fair && perPeerRate > 0 ? s.peers * perPeerRate : undefined
        }
        rows.push(row)
        console.log(`  ${s.name}: ${fmt(calls)} calls/s (${fmt(row.ratio, 2)}x), flooders served ${fmt(row.floodServed)}/s, refused ${fmt(row.floodRefused)}/s`)
      } finally {
        await stopChild(flooder.proc)
      }
    }
    const stats = await ask(server.proc, 'stats', 'stats')

    console.log()
    console.log(table(['scenario', 'calls/s', 'x alone', 'target', 'flood served/s', 'allowed/s', 'flood refused/s'], rows.map(r => [
      r.scenario, fmt(r.calls), fmt(r.ratio, 2), r.target == null ? '' : `>= ${r.target}`,
      fmt(r.floodServed), r.floodAllowed == null ? 'no limit' : fmt(r.floodAllowed), fmt(r.floodRefused)
    ])))
    console.log()
    for (const r of rows) {
      if (r.target != null) { console.log(`${r.scenario}: ${fmt(r.ratio, 2)}x unloaded, target >= ${r.target}: ${r.ratio >= r.target ? 'met' : 'NOT met'}`) }
      if (r.floodAllowed != null) { console.log(`${r.scenario}: flooders served ${fmt(r.floodServed)}/s, allowed ${fmt(r.floodAllowed)}/s: ${r.floodServed <= r.floodAllowed * 1.05 ? 'within' : 'OVER'}`) }
    }
    console.log(`server: ${fmt(stats.requests)} responses; by status ${JSON.stringify(stats.byStatus)}; scheduler ${JSON.stringify(stats.scheduler ?? 'off')}`)
    if (opts.json === true) {
      console.log(JSON.stringify({ bench: 'fairness', node: process.version, date: new Date().toISOString(), serverOptions, durationMs, rows }))
    }
  } finally {
    await client.destroy()
    await stopChild(server.proc)
  }
}

runBenchmark(main)
