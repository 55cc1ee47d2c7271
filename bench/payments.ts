/* eslint-disable no-console */
/**
 * Requests/s of calls paid with a deferred payment (one tab update per call:
 * the promise, its evidence, in one LevelDB batch under the tab's lock) vs
 * free calls of the same method, in the same run, between two libp2p nodes
 * over 127.0.0.1 TCP (noise + yamux), each with its own wallet and LevelDB
 * and one in-process regtest chain.
 *
 * The method is `sha256.hash` on a small body, served twice by the seller:
 * free as `sha256`, and at 1 sat per call as `sha256-paid` (the same
 * definition under another name). Three kinds of call:
 * - free: payment-type none on `sha256`;
 * - defer: payment-type defer on `sha256-paid`, a raw `opencloud.call`
 * (the server's tab update only);
 * - defer + book: the same through `payAndCall`, which also records each
 * promise in the buyer's PromiseBook (the whole client path).
 * Rounds alternate the order. Usage: `node dist/bench/payments.js --help`.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { payAndCall } from '../src/payments/buyer/bidding.js'
import { PromiseBook } from '../src/payments/buyer/promises.js'
import { EmbeddedChain } from '../src/payments/chain/embedded.js'
import { paymentGate } from '../src/payments/seller/gate.js'
import { paymentsService } from '../src/payments/seller/service.js'
import { TabStore } from '../src/payments/seller/tabs.js'
import { Wallet } from '../src/payments/wallet/wallet.js'
import { openCloud } from '../src/protocols/opencloud/net/opencloud.js'
import { PaymentType } from '../src/protocols/opencloud/pb/opencloud.js'
import { sha256Service } from '../src/services/sha256.js'
import { Store } from '../src/store/index.js'
import { flags, fmt, machine, median, parsePositive, rate, runBenchmark, spread, table } from './common.js'
import type { RateResult } from './common.js'
import type { OpenCloud } from '../src/protocols/opencloud/net/opencloud.js'
import type { Libp2p } from 'libp2p'

const USAGE = `usage: node dist/bench/payments.js [options]
  --duration S      seconds per measurement (default 3)
  --rounds N        rounds of (free, defer, defer + book) per mode (default 3)
  --concurrency N   concurrent callers in the second mode (default 8; 1 skips it)
  --warmup S        seconds of warm-up per kind and mode (default 1)
  --json            also print the results as one JSON line`

const opts = flags({
  duration: { type: 'string' },
  rounds: { type: 'string' },
  concurrency: { type: 'string' },
  warmup: { type: 'string' },
  json: { type: 'boolean' }
}, USAGE)

const durationMs = parsePositive('duration', opts.duration as string | undefined, 3) * 1000
const rounds = parsePositive('rounds', opts.rounds as string | undefined, 3, true)
const concurrency = parsePositive('concurrency', opts.concurrency as string | undefined, 8, true)
const warmupMs = parsePositive('warmup', opts.warmup as string | undefined, 1) * 1000
const SIZE = 64

interface BenchPeer {
  libp2p: Libp2p<{ opencloud: OpenCloud }>
  store: Store
  wallet: Wallet
  tabs: TabStore
  dir: string
  stop(): Promise<void>
}

async function peer (chain: EmbeddedChain): Promise<BenchPeer> {
  const dir = await mkdtemp(join(tmpdir(), 'decloud-bench-pay-'))
  const store = new Store(join(dir, 'db'))
  await store.open()
  const wallet = await Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend: chain })
  const tabs = new TabStore({ db: store.sub('tabs') })
  const paid = { ...sha256Service({ pricing: { base: 1n } }), name: 'sha256-paid' }
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      opencloud: openCloud({
        services: [sha256Service(), paid, paymentsService({ wallet, tabs })],
        payment: paymentGate({ wallet, backend: chain, db: store.sub('payments'), tabs, maxTab: 10n ** 15n })
      })
    }
  })
  return {
    libp2p,
    store,
    wallet,
    tabs,
    dir,
    async stop () {
      await libp2p.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

type Kind = 'free' | 'defer' | 'defer + book'
const KINDS: Kind[] = ['free', 'defer', 'defer + book']

async function main (): Promise<void> {
  console.log(`# requests/s: deferred-payment calls (tab update per call) vs free calls of sha256.hash, ${SIZE}-byte body`)
  console.log(`# ${machine()}`)
  const chain = await EmbeddedChain.start({ memory: true })
  const seller = await peer(chain)
  const buyer = await peer(chain)
  try {
    const target = seller.libp2p.getMultiaddrs()[0].toString()
    const oc = buyer.libp2p.services.opencloud
    const book = new PromiseBook({ db: buyer.store.sub('promises') })
    const body = randomBytes(SIZE)
    // value threshold far away: the tab stays open for the whole run
    const threshold = 'value:1000000000000'
    const deferId = `bench-${randomBytes(4).toString('hex')}`
    console.log(`# ${durationMs / 1000} s per measurement, ${rounds} rounds, warm-up ${warmupMs / 1000} s; one tab (${threshold}), evidence kept: last 64 promises`)

    const calls: Record<Kind, () => Promise<void>> = {
      free: async () => {
        const res = await oc.call(target, { service: 'sha256', method: 'hash', body })
        if (!res.ok) { throw new Error(`free call answered ${res.path} ${res.detail}`) }
      },
      defer: async () => {
        const res = await oc.call(target, {
          service: 'sha256-paid',
          method: 'hash',
          body,
          paymentType: PaymentType.PAYMENT_DEFER,
          payment: { currency: 'BTC', amount: 1n, txn: new Uint8Array(0), deferId, deferThreshold: threshold }
        })
        if (!res.ok) { throw new Error(`deferred call answered ${res.path} ${res.detail}`) }
      },
      'defer + book': async () => {
        const res = await payAndCall(oc, target, { service: 'sha256-paid', method: 'hash', body }, {
          pay: { kind: 'defer', amount: 1n, threshold },
          max: 1n,
          wallet: buyer.wallet,
          promises: book
        })
        if (!res.ok || res.kind !== 'defer') { throw new Error(`payAndCall answered ${res.path} ${res.detail}`) }
      }
    }
    for (const k of KINDS) { await calls[k]() }

    const modes = [{ mode: 'sequential', concurrency: 1 }]
    if (concurrency > 1) { modes.push({ mode: `${concurrency} concurrent callers`, concurrency }) }
    const results: Array<{ mode: string, concurrency: number, rates: Record<Kind, number[]>, cpu: Record<Kind, number[]> }> = []
    for (const m of modes) {
      for (const k of KINDS) { await rate(warmupMs, m.concurrency, calls[k]) }
      const r = { ...m, rates: { free: [], defer: [], 'defer + book': [] } as Record<Kind, number[]>, cpu: { free: [], defer: [], 'defer + book': [] } as Record<Kind, number[]> }
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? KINDS : [...KINDS].reverse()
        const line: string[] = []
        for (const k of order) {
          const x: RateResult = await rate(durationMs, m.concurrency, calls[k])
          r.rates[k].push(x.perSecond)
          r.cpu[k].push(x.cpuPerOp)
          line.push(`${k} ${fmt(x.perSecond)}/s (${fmt(x.cpuPerOp)} µs CPU)`)
        }
        console.log(`  ${m.mode}, round ${round + 1}: ${line.join(', ')}`)
      }
      results.push(r)
    }

    console.log()
    const rows: string[][] = []
    for (const r of results) {
      const ratios = (k: Kind): number[] => r.rates[k].map((x, i) => x / r.rates.free[i])
      rows.push([
        r.mode,
        fmt(median(r.rates.free)),
        fmt(median(r.rates.defer)),
        fmt(median(r.rates['defer + book'])),
        fmt(median(ratios('defer')), 2),
        fmt(median(ratios('defer + book')), 2),
        `${fmt(Math.max(...KINDS.map(k => spread(r.rates[k]))))}%`
      ])
    }
    console.log(table(['medians, requests/s', 'free', 'defer', 'defer + book', 'defer/free', '(+book)/free', 'max spread'], rows))
    console.log()
    // CPU time per call varies less than the rate when other programs compete for the cores
    console.log(table(['medians, CPU µs per call', 'free', 'defer', 'defer + book', 'defer − free', '(+book) − free'], results.map(r => [
      r.mode,
      fmt(median(r.cpu.free)),
      fmt(median(r.cpu.defer)),
      fmt(median(r.cpu['defer + book'])),
      fmt(median(r.cpu.defer) - median(r.cpu.free)),
      fmt(median(r.cpu['defer + book']) - median(r.cpu.free))
    ])))
    console.log('(CPU: this process, i.e. client and server together)')
    const tab = await seller.tabs.get(`oc:${buyer.libp2p.peerId.toString()}`, deferId)
    console.log(`tab ${deferId}: ${tab?.promises ?? 0} promises, ${tab?.accrued ?? 0n} sat accrued, ${tab?.evidenceDropped ?? 0} evidence records dropped (bounded)`)
    if (opts.json === true) {
      console.log(JSON.stringify({
        bench: 'payments',
        node: process.version,
        date: new Date().toISOString(),
        durationMs,
        results: results.map(r => ({ mode: r.mode, concurrency: r.concurrency, rates: r.rates, cpu: r.cpu, medians: Object.fromEntries(KINDS.map(k => [k, median(r.rates[k])])) }))
      }))
    }
  } finally {
    await buyer.stop()
    await seller.stop()
    await chain.close()
  }
}

runBenchmark(main)
