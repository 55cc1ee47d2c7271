/**
 * The node's counters, in one prom-client registry: libp2p's own metrics
 * (`@libp2p/prometheus-metrics`, when the node was created with a registry)
 * and decloud's, read from the node when scraped. `GET /metrics` serves the
 * registry in the Prometheus text format and the dashboard reads the same
 * registry (`GET /v1/stats`), so a chart and a Grafana panel never disagree.
 */
import { Counter, Gauge, Registry } from 'prom-client'
import type { ControlledNode } from './http.js'

/** One point of the bandwidth series */
export interface BandwidthSample {
  /** ms since the epoch */
  t: number
  /** bytes received and sent since the previous sample, over all connections */
  in: number
  out: number
}

export interface NodeMetricsInit {
  /** the registry libp2p's metrics write to; a new one when absent (no libp2p metrics) */
  registry?: Registry
  /** ms between bandwidth samples @default 5000 */
  sampleInterval?: number
  /** samples kept @default 360 (30 min at 5 s) */
  samples?: number
}

/** Names of decloud's own metrics (docs/dashboard.md) */
export const METRIC = {
  calls: 'decloud_opencloud_calls_total',
  connections: 'decloud_connections',
  peers: 'decloud_peers',
  storageUsed: 'decloud_storage_used_bytes',
  storageCapacity: 'decloud_storage_capacity_bytes',
  pieces: 'decloud_storage_pieces',
  walletBalance: 'decloud_wallet_balance_sats',
  tabsOpen: 'decloud_tabs_open',
  satsOwedToUs: 'decloud_sats_owed_to_us',
  satsEarned: 'decloud_sats_earned_total',
  satsPromised: 'decloud_sats_we_owe',
  audits: 'decloud_audits_total',
  repairs: 'decloud_repairs_total',
  bytes: 'decloud_bytes_total'
} as const

/** libp2p's byte counter: `protocol` is `global sent`, `global received`, or `<protocol> sent|received` */
const TRANSFER = 'libp2p_data_transfer_bytes_total'

/** Extra counters other parts of the node report into (storage audits, repairs) */
export interface NodeCounters {
  audits(result: 'passed' | 'failed', role: 'buyer' | 'seller'): void
  repairs(n?: number): void
}

export class NodeMetrics implements NodeCounters {
  readonly registry: Registry
  private readonly node: ControlledNode
  private readonly series: BandwidthSample[] = []
  private readonly maxSamples: number
  private readonly timer: ReturnType<typeof setInterval>
  private lastIn = 0
  private lastOut = 0
  private readonly auditCounter: Counter
  private readonly repairCounter: Counter
  /** wallet figures, refreshed by each sample: reading the chain on every scrape would be slow */
  private wallet?: { confirmed: bigint, unconfirmed: bigint, error?: string, at: number }

  constructor (node: ControlledNode, init: NodeMetricsInit = {}) {
    this.node = node
    this.registry = init.registry ?? new Registry()
    this.maxSamples = init.samples ?? 360
    const registers = [this.registry]
    const stats = (): ReturnType<ControlledNode['opencloud']['stats']> => node.opencloud.stats()

    // eslint-disable-next-line no-new
    new Counter({
      name: METRIC.calls,
      help: 'OpenCloud requests answered by this node, by service, method and status',
      labelNames: ['service', 'method', 'status'],
      registers,
      collect () {
        this.reset()
        const s = stats()
        for (const [key, n] of Object.entries(s.byCall ?? {})) {
          const [service, method, status] = key.split(' ')
          this.inc({ service, method, status }, n)
        }
      }
    })
    gauge(registers, METRIC.connections, 'open libp2p connections', () => node.libp2p.getConnections().length)
    gauge(registers, METRIC.peers, 'peers with an open connection', () => new Set(node.libp2p.getConnections().map(c => c.remotePeer.toString())).size)
    gauge(registers, METRIC.storageUsed, 'bytes of pieces stored for buyers', () => node.storage?.usedBytes ?? 0)
    gauge(registers, METRIC.storageCapacity, 'bytes this node offers for storage', () => node.storage?.capacity ?? 0)
    gauge(registers, METRIC.pieces, 'pieces stored for buyers', () => node.storage?.pieces ?? 0)
    const self = this
    // eslint-disable-next-line no-new
    new Gauge({
      name: METRIC.walletBalance,
      help: 'wallet balance in satoshis (as of the last sample), confirmed and unconfirmed',
      labelNames: ['state'],
      registers,
      collect () {
        const w = self.wallet
        if (w == null) { return }
        this.set({ state: 'confirmed' }, Number(w.confirmed))
        this.set({ state: 'unconfirmed' }, Number(w.unconfirmed))
      }
    })
    this.auditCounter = new Counter({ name: METRIC.audits, help: 'storage audits, by role and result', labelNames: ['role', 'result'], registers })
    this.repairCounter = new Counter({ name: METRIC.repairs, help: 'pieces rebuilt and placed on new sellers', registers })
    // eslint-disable-next-line no-new
    new Counter({
      name: METRIC.bytes,
      help: 'bytes over all libp2p connections since start, by direction',
      labelNames: ['direction'],
      registers,
      collect () {
        this.reset()
        this.inc({ direction: 'in' }, self.lastIn)
        this.inc({ direction: 'out' }, self.lastOut)
      }
    })

    this.timer = setInterval(() => { this.sample().catch(() => {}) }, init.sampleInterval ?? 5_000)
    this.timer.unref()
    this.sample().catch(() => {})
  }

  audits (result: 'passed' | 'failed', role: 'buyer' | 'seller'): void {
    this.auditCounter.inc({ role, result })
  }

  repairs (n = 1): void {
    this.repairCounter.inc(n)
  }

  /** The bandwidth series, oldest first */
  bandwidth (): BandwidthSample[] {
    return [...this.series]
  }

  /** Whether libp2p reports its bytes into this registry */
  get hasTransfer (): boolean {
    return this.registry.getSingleMetric(TRANSFER) != null
  }

  /** Wallet balance as of the last sample (undefined before the first answer from the chain) */
  walletBalance (): { confirmed: bigint, unconfirmed: bigint, error?: string, at: number } | undefined {
    return this.wallet
  }

  /** The registry in the Prometheus text format */
  async text (): Promise<string> {
    return this.registry.metrics()
  }

  get contentType (): string {
    return this.registry.contentType
  }

  stop (): void {
    clearInterval(this.timer)
  }

  private async sample (): Promise<void> {
    const totals = await this.transferTotals()
    if (totals != null) {
      const first = this.series.length === 0 && this.lastIn === 0 && this.lastOut === 0
      const point = { t: Date.now(), in: totals.in - this.lastIn, out: totals.out - this.lastOut }
      this.lastIn = totals.in
      this.lastOut = totals.out
      if (!first) {
        this.series.push(point)
        if (this.series.length > this.maxSamples) { this.series.shift() }
      } else {
        this.series.push({ t: point.t, in: 0, out: 0 })
      }
    }
    const p = this.node.payments
    if (p != null) {
      try {
        const b = await p.wallet.balance()
        this.wallet = { confirmed: b.confirmed, unconfirmed: b.unconfirmed, at: Date.now() }
      } catch (err: any) {
        this.wallet = { ...(this.wallet ?? { confirmed: 0n, unconfirmed: 0n }), error: String(err?.message ?? err), at: Date.now() }
      }
    }
  }

  /** Bytes in and out since start, from libp2p's counter (which counts up on each read of the registry) */
  private async transferTotals (): Promise<{ in: number, out: number } | undefined> {
    const metric = this.registry.getSingleMetric(TRANSFER)
    if (metric == null) { return undefined }
    const value = await metric.get()
    let inBytes = 0
    let outBytes = 0
    for (const v of value.values) {
      if (v.labels.protocol === 'global received') { inBytes = v.value }
      if (v.labels.protocol === 'global sent') { outBytes = v.value }
    }
    return { in: inBytes, out: outBytes }
  }
}

function gauge (registers: Registry[], name: string, help: string, read: () => number): Gauge {
  return new Gauge({ name, help, registers, collect () { this.set(read()) } })
}
