/* eslint-disable no-console */
/**
 * Shared helpers for the benchmarks: flags, temp nodes, timing, statistics
 * and tables. Benchmarks print numbers and ratios; they assert nothing about
 * speed.
 */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createDecloudNode } from '../src/node/index.js'
import type { DecloudNode, DecloudNodeOptions } from '../src/node/index.js'

type FlagOptions = Record<string, { type: 'string' | 'boolean', short?: string }>

export const KiB = 1024
export const MiB = 1024 * 1024

/** A decloud node on 127.0.0.1 with a throwaway data dir */
export interface BenchNode {
  node: DecloudNode
  /** first listen address, with /p2p/ */
  addr: string
  /** stops the node and deletes its data dir */
  destroy(): Promise<void>
}

export async function startBenchNode (options: DecloudNodeOptions = {}): Promise<BenchNode> {
  const dataDir = await mkdtemp(join(tmpdir(), 'decloud-bench-'))
  let node: DecloudNode
  try {
    node = await createDecloudNode({ listen: ['/ip4/127.0.0.1/tcp/0'], ...options, dataDir })
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true })
    throw err
  }
  return {
    node,
    addr: node.addresses()[0],
    async destroy () {
      try {
        await node.stop()
      } finally {
        await rm(dataDir, { recursive: true, force: true })
      }
    }
  }
}

const UNITS: Record<string, number> = { b: 1, k: KiB, m: MiB, g: 1024 * MiB }

/**
 * Parses `1024`, `4k`, `4KiB`, `64M`, `64MiB`, `1G` (binary multiples) to bytes.
 * Throws on anything else.
 */
export function parseSize (s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(s.trim())
  if (m == null) { throw new Error(`cannot parse size "${s}" (examples: 1024, 64k, 4MiB, 64M)`) }
  const mult = UNITS[(m[2] ?? 'b').toLowerCase()[0]] ?? 1
  const n = Math.round(Number(m[1]) * mult)
  if (!Number.isSafeInteger(n) || n <= 0) { throw new Error(`size "${s}" out of range`) }
  return n
}

export function parsePositive (name: string, s: string | undefined, dflt: number, integer = false): number {
  if (s == null) { return dflt }
  const n = Number(s)
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got "${s}"`)
  }
  return n
}

/** node:util parseArgs with a --help that prints `usage` and exits */
export function flags (options: FlagOptions, usage: string): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false })
    if ((values as Record<string, unknown>).help === true) {
      console.log(usage)
      process.exit(0)
    }
    return values as Record<string, string | boolean | undefined>
  } catch (err: any) {
    console.error(err.message)
    console.error(usage)
    process.exit(2)
  }
}

export function median (xs: number[]): number {
  if (xs.length === 0) { return NaN }
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** (max - min) / median, as a percentage: the spread of a set of runs */
export function spread (xs: number[]): number {
  const m = median(xs)
  if (!(m > 0)) { return NaN }
  return (Math.max(...xs) - Math.min(...xs)) / m * 100
}

export interface RateResult {
  /** completed operations per second (wall clock) */
  perSecond: number
  /**
   * CPU time (user + system) this process spent per operation, µs. Less
   * sensitive than the rate to other programs competing for the cores; with
   * the server in this process it covers both ends.
   */
  cpuPerOp: number
}

/**
 * Runs `op` in `concurrency` loops until `durationMs` has passed and returns
 * completed operations per second. Each loop starts its next op only when its
 * previous one finished (closed-loop load).
 */
export async function rate (durationMs: number, concurrency: number, op: (worker: number) => Promise<void>): Promise<RateResult> {
  let done = 0
  const cpu = process.cpuUsage()
  const start = performance.now()
  const deadline = start + durationMs
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    while (performance.now() < deadline) {
      await op(w)
      done++
    }
  }))
  const elapsed = performance.now() - start
  const used = process.cpuUsage(cpu)
  return { perSecond: done / (elapsed / 1000), cpuPerOp: (used.user + used.system) / Math.max(1, done) }
}

/** Milliseconds taken by `fn` */
export async function time (fn: () => Promise<void>): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

/** Formats a number with thousands separators and `digits` decimals */
export function fmt (n: number, digits = 0): string {
  if (!Number.isFinite(n)) { return String(n) }
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Prints a plain-text table, first column left-aligned, the rest right-aligned */
export function table (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  return [line(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

/** One line describing where the numbers come from */
export function machine (): string {
  const c = cpus()
  return `node ${process.version}, ${c.length} cores (${c[0]?.model.trim() ?? 'unknown cpu'}), ${process.platform}/${process.arch}, ${new Date().toISOString()}`
}

/**
 * If something still holds the event loop once the benchmark is finished
 * (it should not), exit anyway: a benchmark must not hang a script.
 */
export function exitWhenDone (graceMs = 5_000): void {
  setTimeout(() => {
    console.error(`handles still open ${graceMs} ms after the benchmark finished; exiting`)
    process.exit(0)
  }, graceMs).unref()
}

/** Runs a benchmark's main function: prints a failure, sets the exit code, and never hangs */
export function runBenchmark (main: () => Promise<void>): void {
  main().then(() => { exitWhenDone() }, (err) => {
    console.error(err)
    process.exitCode = 1
    exitWhenDone()
  })
}
