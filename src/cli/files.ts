/** What `decloud put/get/ls/rm/status` share: the running node, sizes, durations, the progress bar */
import cliProgress from 'cli-progress'
import { ControlApiError, findRunningNode } from '../control/client.js'
import { CliError, TransportError, UsageError } from './command.js'
import type { ControlClient } from '../control/client.js'

/** The control API of the node running for `dataDir`; files live in that node */
export async function runningClient (dataDir: string): Promise<ControlClient> {
  let running
  try {
    running = await findRunningNode(dataDir)
  } catch (err: any) {
    throw new CliError(`the node running for ${dataDir} refused the control request: ${err.message}`)
  }
  if (running == null) { throw new UsageError(`no node is running for ${dataDir}: start one (decloud node); it keeps the files, their keys and their sellers`) }
  return running.client
}

/** The control API's error as these commands report it */
export function filesError (e: any, dataDir: string): CliError {
  if (!(e instanceof ControlApiError)) { return new CliError(String(e?.message ?? e)) }
  if (e.type === 'bad-request') { return new UsageError(e.message) }
  if (['unreachable', 'timeout'].includes(e.type)) { return new TransportError(`the node running for ${dataDir}: ${e.message}`) }
  if (e.status === 404 && e.type === 'not-found' && /no endpoint/.test(e.message)) { return new CliError(`the node running for ${dataDir} is too old to keep files (restart it)`) }
  return new CliError(e.message)
}

/** `30d`, `12h`, `90m`, `3600s` or plain seconds → seconds */
export function parseDuration (s: string): number {
  const m = /^([0-9]{1,9})([smhd]?)$/.exec(s)
  if (m == null || Number(m[1]) === 0) { throw new UsageError(`--duration "${s}": a positive number of seconds, or with s, m, h or d (e.g. 30d)`) }
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]]
}

export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

export interface Progress {
  update(bytes: number, total?: number): void
  stop(): void
}

/**
 * A progress bar on stderr (bytes, rate, ETA) when stderr is a terminal;
 * nothing otherwise. `total` undefined: bytes and rate only (stdin).
 */
export function progressBar (verb: string, total?: number): Progress {
  if (process.stderr.isTTY !== true) { return { update () {}, stop () {} } }
  const start = Date.now()
  const rate = (v: number): string => `${formatBytes(v / Math.max(0.001, (Date.now() - start) / 1000))}/s`
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    hideCursor: true,
    format: total != null
      ? `${verb} [{bar}] {percentage}% {done} of {size} · {rate} · ETA {eta_formatted}`
      : `${verb} {done} · {rate}`,
    etaBuffer: 50
  }, cliProgress.Presets.shades_classic)
  let size = total
  bar.start(total ?? 1, 0, { done: formatBytes(0), size: formatBytes(total ?? 0), rate: '-' })
  return {
    update (bytes, t) {
      if (t != null && t >= 0 && t !== size) {
        size = t
        bar.setTotal(t)
      }
      bar.update(size != null ? Math.min(bytes, size) : 0, { done: formatBytes(bytes), size: formatBytes(size ?? 0), rate: rate(bytes) })
    },
    stop () { bar.stop() }
  }
}
