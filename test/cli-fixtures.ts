/**
 * Runs the real `decloud` command line (bin/decloud.js) as child processes.
 * Every process started here is tracked; `killAll()` in an after hook ends
 * whatever a failing test left behind.
 */
import { spawn } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { tempDir } from './fixtures.js'
import type { ChildProcess } from 'node:child_process'

/** bin/decloud.js (tests run from dist/test/) */
export const BIN = fileURLToPath(new URL('../../bin/decloud.js', import.meta.url))

const live = new Set<ChildProcess>()

/** A data dir no test names explicitly: a command that forgets --data-dir lands here, never in ~/.decloud */
let fallbackDir: string | undefined

async function env (): Promise<NodeJS.ProcessEnv> {
  fallbackDir ??= await tempDir('decloud-cli-default-')
  const e: NodeJS.ProcessEnv = { ...process.env, DECLOUD_DATA_DIR: fallbackDir }
  delete e.DECLOUD_DEBUG
  return e
}

function track (child: ChildProcess): ChildProcess {
  live.add(child)
  child.once('exit', () => { live.delete(child) })
  return child
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
}

export interface RunOptions {
  /** written to stdin, which is then closed */
  input?: string | Uint8Array
  /** the process is killed after this long (ms) @default 30_000 */
  timeout?: number
}

/** Runs `decloud …args` to completion */
export async function runCli (args: string[], options: RunOptions = {}): Promise<CliResult> {
  const child = track(spawn(process.execPath, [BIN, ...args], { env: await env(), stdio: ['pipe', 'pipe', 'pipe'] }))
  const out: Buffer[] = []
  const errs: Buffer[] = []
  child.stdout?.on('data', (b: Buffer) => out.push(b))
  child.stderr?.on('data', (b: Buffer) => errs.push(b))
  child.stdin?.on('error', () => {})
  child.stdin?.end(options.input)
  const timer = setTimeout(() => { child.kill('SIGKILL') }, options.timeout ?? 30_000)
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(errs).toString('utf8') })
    })
  })
}

export interface CliNode {
  process: ChildProcess
  dataDir: string
  /** first `listening on` address */
  addr: string
  peerId: string
  /** every `listening on` address */
  addresses: string[]
  /** what the process wrote on stderr so far */
  stderr(): string
  /** sends a signal and waits for the exit (SIGKILL after `timeout`) */
  stop(signal?: NodeJS.Signals, timeout?: number): Promise<{ code: number | null, signal: NodeJS.Signals | null, ms: number, stderr: string }>
}

/**
 * Starts `decloud node --dev --data-dir DIR --listen /ip4/127.0.0.1/tcp/0`
 * and resolves once it printed its `listening on` line. Unless `payments`
 * is set it runs with `--no-payments` (free services, no chain): the tests of
 * calls, discovery and the control API need no bitcoin.
 */
export async function startCliNode (dataDir: string, extra: string[] = [], timeout = 30_000, options: { payments?: boolean } = {}): Promise<CliNode> {
  const args = [BIN, 'node', '--dev', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', ...(options.payments === true ? [] : ['--no-payments']), ...extra]
  const child = track(spawn(process.execPath, args, { env: await env(), stdio: ['ignore', 'pipe', 'pipe'] }))
  let stdout = ''
  let stderr = ''
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString('utf8') })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  const addresses = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`decloud node printed no address within ${timeout} ms; stderr: ${stderr}`))
    }, timeout)
    child.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString('utf8')
      const lines = stdout.split('\n').filter(l => l.startsWith('listening on '))
      if (lines.length > 0 && stdout.endsWith('\n')) {
        clearTimeout(timer)
        resolve(lines.map(l => l.slice('listening on '.length).trim()))
      }
    })
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`decloud node exited (${code ?? signal}) before listening; stderr: ${stderr}`))
    })
  })
  const addr = addresses[0]
  return {
    process: child,
    dataDir,
    addr,
    peerId: addr.split('/p2p/')[1],
    addresses,
    stderr: () => stderr,
    async stop (signal = 'SIGINT', limit = 10_000) {
      const start = Date.now()
      if (child.exitCode != null || child.signalCode != null) {
        return { code: child.exitCode, signal: child.signalCode, ms: 0, stderr }
      }
      const killer = setTimeout(() => { child.kill('SIGKILL') }, limit)
      child.kill(signal)
      const r = await exited
      clearTimeout(killer)
      return { ...r, ms: Date.now() - start, stderr }
    }
  }
}

/** Kills every process started by this module that is still running, and removes the fallback data dir */
export async function killAll (): Promise<void> {
  await Promise.all([...live].map(async child => {
    if (child.exitCode != null || child.signalCode != null) { return }
    const gone = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    await gone
  }))
  if (fallbackDir != null) {
    await rm(fallbackDir, { recursive: true, force: true })
    fallbackDir = undefined
  }
}
