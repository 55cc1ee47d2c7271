/* eslint-disable no-console */
/**
 * Policy cost:
 *
 * 1. evaluation: `PolicyEngine.decide` with 1,000 rules (services, methods,
 * specific credentials, bitcoin classes, trust bands), per call: median
 * and p99 in µs; the same for the access stage (decision + token
 * buckets); and a worst case where all 1,000 rules are global bitcoin
 * classes, so every rule is a candidate;
 * 2. RPC: `sha256.hash` round trips/s between real nodes over 127.0.0.1 with
 * no policy, with the default policy (whose per-peer limit of 200
 * requests/s, burst 400, this client exceeds: most answers are then
 * rate-limited), and with the default policy with that limit raised out
 * of reach (the cost of evaluating it), alternated in one run.
 *
 * Usage: `node dist/bench/policy.js --help`.
 */
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { base58btc } from 'multiformats/bases/base58'
import { PolicyEngine, chainStages, defaultPolicy, parsePolicy, policyStages } from '../src/policy/index.js'
import { PaymentType, Status, defaultPaymentGate, openCloudId } from '../src/protocols/opencloud/index.js'
import { flags, fmt, machine, median, parsePositive, rate, runBenchmark, spread, startBenchNode, table } from './common.js'
import type { BenchNode } from './common.js'
import type { PolicyContext } from '../src/policy/index.js'
import type { CallState, Stage } from '../src/protocols/opencloud/api/call.js'

const USAGE = `usage: node dist/bench/policy.js [options]
  --rules N         rules in the evaluation policy (default 1000)
  --calls N         decisions timed one by one (default 200000)
  --duration S      seconds per RPC measurement (default 3)
  --rounds N        rounds of the three RPC configurations (default 3)
  --concurrency N   concurrent callers in the second RPC mode (default 8; 1 skips it)
  --no-rpc          evaluation only
  --json            also print the results as one JSON line`

const opts = flags({
  rules: { type: 'string' },
  calls: { type: 'string' },
  duration: { type: 'string' },
  rounds: { type: 'string' },
  concurrency: { type: 'string' },
  'no-rpc': { type: 'boolean' },
  json: { type: 'boolean' }
}, USAGE)

const RULES = parsePositive('rules', opts.rules as string | undefined, 1000, true)
const CALLS = parsePositive('calls', opts.calls as string | undefined, 200_000, true)
const durationMs = parsePositive('duration', opts.duration as string | undefined, 3) * 1000
const rounds = parsePositive('rounds', opts.rounds as string | undefined, 3, true)
const concurrency = parsePositive('concurrency', opts.concurrency as string | undefined, 8, true)

/** A peer id in the right shape, random */
function fakePeer (): string {
  return '12D3KooW' + base58btc.encode(randomBytes(32)).slice(1, 45)
}

/** Deterministic pseudo-random numbers, so runs are comparable */
function prng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

interface Mix {
  text: string
  peers: string[]
  services: string[]
}

/** A policy of `n` rules of every kind, as YAML (parsed like a file) */
function mixedPolicy (n: number): Mix {
  const rnd = prng(42)
  const services = Array.from({ length: 50 }, (_, i) => `svc${i}`)
  const peers = Array.from({ length: 200 }, fakePeer)
  const lines = ['version: 1', 'rules:', '  - scope: global', '    rate-limit: { requests: 1000000, bytes: 1GiB }']
  const seen = new Set<string>()
  let redraws = 0
  for (let i = 1; i < n; i++) {
    const svc = services[Math.floor(rnd() * services.length)]
    const kind = i % 10
    let scope: string
    let command: string
    if (kind < 3) {
      scope = `{ method: ${svc}.m${i % 20} }`
      command = i % 2 === 0 ? 'allow: true' : `min-payment: ${i}`
    } else if (kind < 5) {
      scope = `{ id: oc:${peers[i % peers.length]}${rnd() < 0.5 ? `, service: ${svc}` : ''} }`
      command = rnd() < 0.3 ? 'deny: true' : `max-tab: ${i}`
    } else if (kind < 7) {
      scope = `{ service: ${svc}, bitcoin: { min-balance: ${1000 * i}, min-age: ${i % 12} } }`
      command = `max-tab: ${i}\n    defer: allow`
    } else if (kind < 8) {
      scope = `{ service: ${svc}, trust: { min: ${(i % 100) / 100} } }`
      command = 'allow: true'
    } else if (kind < 9) {
      scope = `{ method: ${svc}.m${i % 20} }`
      command = `rate-limit: { requests: ${i} }`
    } else {
      scope = `{ service: ${svc}, bitcoin: { min-balance: ${i} } }`
      command = `rate-limit: { requests: ${i} }`
    }
    // two rules of one scope may not set the same command: draw again
    const key = scope + command.split(':')[0]
    if (seen.has(key) && ++redraws < 100_000) { i--; continue }
    seen.add(key)
    lines.push(`  - scope: ${scope}`, `    ${command}`)
  }
  return { text: lines.join('\n') + '\n', peers, services }
}

function contexts (mix: Mix, count: number): PolicyContext[] {
  const rnd = prng(7)
  return Array.from({ length: count }, (_, i) => {
    const peer = rnd() < 0.5 ? mix.peers[Math.floor(rnd() * mix.peers.length)] : fakePeer()
    const c: PolicyContext = {
      peer,
      credentials: [`oc:${peer}`],
      service: mix.services[Math.floor(rnd() * mix.services.length)],
      method: `m${i % 20}`,
      trust: rnd() < 0.5 ? rnd() : undefined,
      usage: [BigInt(i % 4096)]
    }
    if (rnd() < 0.3) { c.bitcoin = [{ address: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', confirmed: BigInt(Math.floor(rnd() * 2_000_000)), unconfirmed: 0n, age: Math.floor(rnd() * 20) }] }
    return c
  })
}

interface Timing { median: number, p99: number, mean: number }

/** µs per call of `fn`, each call timed on its own */
function timeEach<T> (inputs: T[], fn: (x: T) => unknown): Timing {
  for (let i = 0; i < Math.min(20_000, inputs.length); i++) { fn(inputs[i]) }
  const samples = new Float64Array(inputs.length)
  const start = process.hrtime.bigint()
  for (let i = 0; i < inputs.length; i++) {
    const t0 = process.hrtime.bigint()
    fn(inputs[i])
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000
  }
  const total = Number(process.hrtime.bigint() - start) / 1000
  samples.sort()
  return { median: samples[samples.length >> 1], p99: samples[Math.floor(samples.length * 0.99)], mean: total / inputs.length }
}

async function evaluation (): Promise<Record<string, Timing>> {
  const mix = mixedPolicy(RULES)
  const t0 = performance.now()
  const engine = new PolicyEngine(parsePolicy(mix.text, { file: 'bench.yaml' }))
  const compileMs = performance.now() - t0
  console.log(`# ${engine.size} rules: parsed and compiled in ${fmt(compileMs, 1)} ms`)
  const ctxs = contexts(mix, CALLS)
  const results: Record<string, Timing> = {}
  results[`decide, ${engine.size} mixed rules`] = timeEach(ctxs, c => engine.decide(c))

  // the access stage: decision + token buckets, on call states like the server's
  const stages = policyStages(engine)
  const key = await generateKeyPair('Ed25519')
  const peer = peerIdFromPrivateKey(key)
  const states: CallState[] = ctxs.slice(0, Math.min(CALLS, 100_000)).map(c => ({
    peer,
    request: { id: [openCloudId(peer)], sig: [], nonce: new Uint8Array(), service: c.service, method: c.method, args: [], paymentType: PaymentType.PAYMENT_NONE, body: new Uint8Array() } as unknown as CallState['request'],
    digest: new Uint8Array(32),
    credentials: [openCloudId(peer)],
    signal: AbortSignal.timeout(60_000),
    bitcoin: c.bitcoin != null ? [...c.bitcoin] : undefined
  }))
  const access = stages.access as (s: CallState) => unknown
  results[`access stage, ${engine.size} mixed rules`] = timeEach(states, s => access(s))

  // worst case: every rule a candidate for every call
  const lines = ['rules:']
  for (let i = 0; i < RULES; i++) { lines.push(`  - scope: { bitcoin: { min-balance: ${i + 1} } }`, `    max-tab: ${i + 1}`) }
  const flat = new PolicyEngine(parsePolicy(lines.join('\n') + '\n', { file: 'flat.yaml' }))
  results[`decide, ${flat.size} global bitcoin classes (worst case)`] = timeEach(ctxs.slice(0, 50_000), c => flat.decide(c))

  const def = new PolicyEngine(defaultPolicy())
  results[`decide, default policy (${def.size} rules)`] = timeEach(ctxs.map(c => ({ ...c, service: 'sha256', method: 'hash' })), c => def.decide(c))

  console.log(table(['policy evaluation', 'median µs', 'p99 µs', 'mean µs'],
    Object.entries(results).map(([k, t]) => [k, fmt(t.median, 2), fmt(t.p99, 2), fmt(t.mean, 2)])))
  console.log(`(each of ${fmt(CALLS)} calls timed on its own with hrtime: the timer adds ~0.05–0.1 µs; mean = total / calls)`)
  return results
}

interface Config {
  name: string
  node: BenchNode
  ok: number
  limited: number
}

/** The default policy with its rate limit raised out of reach: the cost of evaluating it, not of being limited */
function unlimitedDefault (): PolicyEngine {
  const p = defaultPolicy()
  p.rules = p.rules.map(r => r.rateLimit != null ? { ...r, rateLimit: { requests: 1e9, bytes: 1e12 } } : r)
  return new PolicyEngine(p)
}

async function rpc (): Promise<Array<{ mode: string, results: Record<string, { perSecond: number[], okPerSecond: number[], cpu: number[] }> }>> {
  const server = (access?: Stage, payment?: Stage): Promise<BenchNode> => startBenchNode({ opencloud: { access, payment } })
  const def = policyStages(new PolicyEngine(defaultPolicy()))
  const raised = policyStages(unlimitedDefault())
  const configs: Config[] = [
    { name: 'no policy', node: await server(), ok: 0, limited: 0 },
    { name: 'default policy', node: await server(def.access, chainStages(def.payment, defaultPaymentGate)), ok: 0, limited: 0 },
    { name: 'default policy, limit raised', node: await server(raised.access, chainStages(raised.payment, defaultPaymentGate)), ok: 0, limited: 0 }
  ]
  const client = await startBenchNode()
  const out: Array<{ mode: string, results: Record<string, { perSecond: number[], okPerSecond: number[], cpu: number[] }> }> = []
  try {
    const body = randomBytes(1024)
    const op = (c: Config) => async (): Promise<void> => {
      const res = await client.node.opencloud.call(c.node.addr, { service: 'sha256', method: 'hash', body })
      if (res.status === Status.OK) {
        c.ok++
      } else if (res.status === Status.RATE_LIMITED) {
        c.limited++
      } else {
        throw new Error(`sha256.hash answered ${res.path} ${res.detail}`)
      }
    }
    const modes = [{ mode: 'sequential, 1 stream', concurrency: 1 }]
    if (concurrency > 1) { modes.push({ mode: `${concurrency} concurrent callers`, concurrency }) }
    for (const m of modes) {
      const results: Record<string, { perSecond: number[], okPerSecond: number[], cpu: number[] }> = {}
      for (const c of configs) {
        results[c.name] = { perSecond: [], okPerSecond: [], cpu: [] }
        await rate(1000, m.concurrency, op(c))
      }
      for (let round = 0; round < rounds; round++) {
        // rotate the order each round so drift in the machine's load favours none
        const order = configs.map((_, i) => configs[(i + round) % configs.length])
        for (const c of order) {
          c.ok = 0
          c.limited = 0
          // a fresh bucket per measurement: every round starts with the same burst
          def.limiter.clear()
          const r = await rate(durationMs, m.concurrency, op(c))
          const seconds = durationMs / 1000
          results[c.name].perSecond.push(r.perSecond)
          results[c.name].okPerSecond.push(c.ok / seconds)
          results[c.name].cpu.push(r.cpuPerOp)
          console.log(`  ${m.mode}, round ${round + 1}, ${c.name}: ${fmt(r.perSecond)} answers/s, ${fmt(c.ok / seconds)} ok/s, ${fmt(c.limited / seconds)} rate-limited/s, ${fmt(r.cpuPerOp)} µs CPU per answer`)
        }
      }
      out.push({ mode: m.mode, results })
    }
    console.log()
    const rows: string[][] = []
    for (const { mode, results } of out) {
      const base = median(results['no policy'].perSecond)
      for (const [name, r] of Object.entries(results)) {
        rows.push([`${mode}: ${name}`, fmt(median(r.perSecond)), `${fmt(spread(r.perSecond))}%`, fmt(median(r.okPerSecond)), fmt(median(r.cpu)), fmt(median(r.perSecond) / base, 2)])
      }
    }
    console.log(table(['sha256.hash, 1 KiB', 'answers/s', 'spread', 'ok/s', 'CPU µs/answer', 'vs no policy'], rows))
    console.log('(client and servers in this process; CPU covers both ends)')
  } finally {
    await client.destroy()
    for (const c of configs) { await c.node.destroy() }
  }
  return out
}

async function main (): Promise<void> {
  console.log('# policy evaluation and RPC rate with and without a policy')
  console.log(`# ${machine()}`)
  const evalResults = await evaluation()
  let rpcResults
  if (opts['no-rpc'] !== true) {
    console.log()
    rpcResults = await rpc()
  }
  if (opts.json === true) {
    console.log(JSON.stringify({ bench: 'policy', node: process.version, date: new Date().toISOString(), rules: RULES, calls: CALLS, evaluation: evalResults, rpc: rpcResults }))
  }
}

runBenchmark(main)
