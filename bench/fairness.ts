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
import { setPriority } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { flags, fmt, machine, median, parsePositive, rate, runBenchmark, startBenchNode, table } from './common.js'
import type { ChildProcess } from 'node:child_process'

const USAGE = `usage: node dist/bench/fairness.js [options]
  --duration S      seconds per measurement (default 5)
  --warmup S        seconds of flooding before a measurement (default 1)
  --rounds N        rounds of (alone, flooded) pairs per scenario (default 3)
  --rate N          the server's per-peer requests/s (fairness.requestsPerSecond; default 200,
                    the default policy's per-peer rate); 0: no metering
  --no-fairness     serve every stream as it comes (fairness: false), the behaviour before
  --nice N          run the flooders' process at this nice value (default 0); on a machine
                    whose cores are all busy, a flooder at the caller's priority takes CPU
                    from the caller and the server, which measures the OS, not the server
  --json            also print the results as one JSON line`

const opts = flags({
  duration: { type: 'string' },
  warmup: { type: 'string' },
  rounds: { type: 'string' },
  rate: { type: 'string' },
  'no-fairness': { type: 'boolean' },
  nice: { type: 'string' },
  json: { type: 'boolean' }
}, USAGE)

const durationMs = parsePositive('duration', opts.duration as string | undefined, 5) * 1000
const warmupMs = parsePositive('warmup', opts.warmup as string | undefined, 1) * 1000
const rounds = parsePositive('rounds', opts.rounds as string | undefined, 3, true)
const perPeerRate = opts.rate == null ? 200 : Number(opts.rate)
if (!Number.isFinite(perPeerRate) || perPeerRate < 0) {
  console.error('--rate must be a non-negative number')
  process.exit(2)
}
const fair = opts['no-fairness'] !== true
const nice = opts.nice == null ? 0 : Number(opts.nice)
if (!Number.isInteger(nice) || nice < 0 || nice > 19) {
  console.error('--nice must be an integer from 0 to 19')
  process.exit(2)
}
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
  round: number
  /** the caller alone, just before */
  alone: number
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
  const metering = perPeerRate > 0 ? { requestsPerSecond: perPeerRate, requestBurst: 2 * perPeerRate } : {}
  const serverOptions = { fairness: fair ? metering : false }
  console.log('# fairness: a lockstep sha256.hash caller on one stream, alone and beside flooders (stale-nonce requests)')
  console.log(`# ${machine()}`)
  console.log(`# server opencloud options: ${JSON.stringify(serverOptions)}; ${durationMs / 1000} s per measurement after ${warmupMs / 1000} s of flooding; flooders at nice ${nice}`)
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

    const scenarios: Scenario[] = [
      { name: '1 flooder x 64 streams', peers: 1, streams: 64, target: 0.5 },
      { name: '8 flooders x 16 streams', peers: 8, streams: 16, target: 0.3 }
    ]
    // each loaded measurement is paired with an unloaded one just before it:
    // the machine's load drifts, a ratio within one pair saw the same load
    for (let round = 0; round < rounds; round++) {
      for (const s of scenarios) {
        const alone = (await rate(durationMs, 1, call)).perSecond
        const flooder = await child(['flood', addr, String(s.peers), String(s.streams)])
        if (nice > 0) { setPriority(flooder.proc.pid as number, nice) }
        try {
          await new Promise(resolve => setTimeout(resolve, warmupMs))
          const before = await ask(flooder.proc, 'count', 'counts')
          const start = performance.now()
          const calls = (await rate(durationMs, 1, call)).perSecond
          const after = await ask(flooder.proc, 'count', 'counts')
          const seconds = (performance.now() - start) / 1000
          const row: Row = {
            scenario: s.name,
            round: round + 1,
            alone,
            calls,
            ratio: calls / alone,
            target: s.target,
            floodServed: (SERVED(after) - SERVED(before)) / seconds,
            floodRefused: (REFUSED(after) - REFUSED(before)) / seconds,
            // each flooder may spend its bucket (2 s worth) on top of the rate
            floodAllowed: fair && perPeerRate > 0 ? s.peers * (perPeerRate + 2 * perPeerRate / seconds) : undefined
          }
          rows.push(row)
          console.log(`  round ${round + 1}, ${s.name}: alone ${fmt(alone)} calls/s, flooded ${fmt(calls)} calls/s (${fmt(row.ratio, 2)}x), flooders served ${fmt(row.floodServed)}/s, refused ${fmt(row.floodRefused)}/s`)
        } finally {
          await stopChild(flooder.proc)
        }
      }
    }
    const stats = await ask(server.proc, 'stats', 'stats')

    console.log()
    const lines: string[][] = []
    for (const s of scenarios) {
      const rs = rows.filter(r => r.scenario === s.name)
      const allowed = median(rs.map(r => r.floodAllowed ?? NaN))
      lines.push([s.name, fmt(median(rs.map(r => r.alone))), fmt(median(rs.map(r => r.calls))), fmt(median(rs.map(r => r.ratio)), 2),
        rs.map(r => fmt(r.ratio, 2)).join(' '), s.target == null ? '' : `>= ${s.target}`,
        fmt(median(rs.map(r => r.floodServed))), Number.isNaN(allowed) ? 'no limit' : fmt(allowed), fmt(median(rs.map(r => r.floodRefused)))])
    }
    console.log(table(['scenario (medians)', 'alone/s', 'flooded/s', 'ratio', 'ratios', 'target', 'flood served/s', 'allowed/s', 'flood refused/s'], lines))
    console.log()
    for (const s of scenarios) {
      const rs = rows.filter(r => r.scenario === s.name)
      const ratio = median(rs.map(r => r.ratio))
      if (s.target != null) { console.log(`${s.name}: ${fmt(ratio, 2)}x unloaded (median of ${rs.length}), target >= ${s.target}: ${ratio >= s.target ? 'met' : 'NOT met'}`) }
      const over = rs.filter(r => r.floodAllowed != null && r.floodServed > r.floodAllowed * 1.05)
      if (rs[0]?.floodAllowed != null) { console.log(`${s.name}: flooders served ${rs.map(r => `${fmt(r.floodServed)}/s of ${fmt(r.floodAllowed ?? 0)}/s`).join(', ')} allowed (rate + burst): ${over.length === 0 ? 'within' : 'OVER'}`) }
    }
    console.log(`server: ${fmt(stats.requests)} responses; by status ${JSON.stringify(stats.byStatus)}; scheduler ${JSON.stringify(stats.scheduler ?? 'off')}`)
    if (opts.json === true) {
      console.log(JSON.stringify({ bench: 'fairness', node: process.version, date: new Date().toISOString(), serverOptions, durationMs, nice, rows }))
    }
  } finally {
    await client.destroy()
    await stopChild(server.proc)
  }
}

runBenchmark(main)
