/**
 * Hot reload of a policy file, on change (fs.watch, debounced) and on
 * SIGHUP. A new file that does not parse keeps the policy in force and logs
 * the error with its line; a good one replaces the engine between calls. No
 * connection is touched: the pipeline stage reads the current engine once
 * per call.
 */
import { watch } from 'node:fs'
import { access } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import { defaultPolicy } from './defaults.js'
import { PolicyEngine } from './engine.js'
import { loadPolicyFile } from './parse.js'
import type { Logger, Startable } from '@libp2p/interface'
import type { FSWatcher } from 'node:fs'

/** The policy file a data dir may hold */
export const POLICY_FILE = 'policy.yaml'

export interface PolicyReloaderInit {
  file: string
  /**
   * Wait this long after the last change before reading (ms)
   *
   * @default 200
   */
  debounce?: number
  /**
   * Reload on SIGHUP
   *
   * @default true
   */
  sighup?: boolean
  /**
   * Watch the file
   *
   * @default true
   */
  watch?: boolean
  log?: Logger
  /** called with each engine that took effect (not the first) */
  onReload?(engine: PolicyEngine): void
  /** called with each error that kept the previous policy */
  onError?(err: Error): void
}

export type ReloadResult = { ok: true, engine: PolicyEngine, changed: boolean } | { ok: false, error: Error }

/**
 * Keeps the engine of a policy file current.
 *
 * @example
 * ```ts
 * const reloader = new PolicyReloader({ file: join(dataDir, 'policy.yaml') })
 * await reloader.start() // throws PolicyError (with the line) if the file is bad
 * const stages = policyStages(() => reloader.engine)
 * ```
 */
export class PolicyReloader implements Startable {
  readonly file: string
  private current?: PolicyEngine
  private readonly init: PolicyReloaderInit
  private readonly log: Logger
  private watcher?: FSWatcher
  private timer?: ReturnType<typeof setTimeout>
  private running?: Promise<ReloadResult>
  /** the reload that reads the file once the running one is done */
  private queued?: Promise<ReloadResult>
  private started = false
  /** the last error that kept the previous policy, cleared by a good reload */
  lastError?: Error
  /** reloads that took effect */
  reloads = 0
  private readonly onSighup = (): void => {
    this.log('SIGHUP: reloading %s', this.file)
    void this.reload()
  }

  constructor (init: PolicyReloaderInit) {
    this.init = init
    this.file = resolve(init.file)
    this.log = init.log ?? logger('decloud:policy')
  }

  /** The engine in force */
  get engine (): PolicyEngine {
    if (this.current == null) { throw new Error('the policy reloader is not started') }
    return this.current
  }

  /** Reads the file (throws PolicyError when it is bad), then watches it */
  async start (): Promise<void> {
    if (this.started) { return }
    this.current = new PolicyEngine(await loadPolicyFile(this.file))
    if (this.init.watch !== false) {
      // watch the folder, not the file: editors replace a file by renaming a new one over it
      const name = basename(this.file)
      try {
        this.watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
          if (changed == null || changed.toString() === name) { this.schedule() }
        })
        this.watcher.on('error', (err) => { this.log.error('watching %s failed - %e', this.file, err) })
      } catch (err: any) {
        this.log.error('cannot watch %s (reload with SIGHUP) - %e', this.file, err)
      }
    }
    if (this.init.sighup !== false && process.platform !== 'win32') { process.on('SIGHUP', this.onSighup) }
    this.started = true
  }

  stop (): void {
    if (!this.started) { return }
    this.started = false
    clearTimeout(this.timer)
    this.watcher?.close()
    this.watcher = undefined
    process.removeListener('SIGHUP', this.onSighup)
  }

  isStarted (): boolean {
    return this.started
  }

  private schedule (): void {
    if (!this.started) { return }
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { void this.reload() }, this.init.debounce ?? 200)
    this.timer.unref?.()
  }

  /**
   * Reads the file again now. A bad file keeps the policy in force; the
   * error is logged (with its line) and returned. Reloads never overlap: one
   * asked for meanwhile runs after, and every request made during a reload
   * gets the result of that next one (which read the file as it is now).
   */
  async reload (): Promise<ReloadResult> {
    if (this.queued != null) { return this.queued }
    if (this.running != null) {
      const before = this.running
      this.queued = (async () => {
        await before
        this.queued = undefined
        return this.reload()
      })()
      return this.queued
    }
    this.running = this.load()
    try {
      return await this.running
    } finally {
      this.running = undefined
    }
  }

  private async load (): Promise<ReloadResult> {
    try {
      const engine = new PolicyEngine(await loadPolicyFile(this.file))
      if (!this.started) { return { ok: true, engine, changed: false } }
      this.current = engine
      this.lastError = undefined
      this.reloads++
      this.log('policy reloaded from %s: %d rules', this.file, engine.size)
      this.init.onReload?.(engine)
      return { ok: true, engine, changed: true }
    } catch (err: any) {
      this.lastError = err
      this.log.error('policy not reloaded, keeping the previous one (%d rules): %s', this.current?.size ?? 0, err.message)
      this.init.onError?.(err)
      return { ok: false, error: err }
    }
  }
}

export interface NodePolicyOptions {
  /** `--policy FILE`; must exist */
  file?: string
  /** the data dir, whose `policy.yaml` is used when it exists */
  dataDir?: string
  log?: Logger
  /**
   * @default true
   */
  watch?: boolean
  /**
   * @default true
   */
  sighup?: boolean
}

export interface NodePolicy {
  /** the file in force, undefined for the default policy */
  file?: string
  /** the current engine (changes on reload) */
  current(): PolicyEngine
  reloader?: PolicyReloader
  stop(): void
}

/** `--policy FILE`, else `<dataDir>/policy.yaml` when it exists, else undefined (the default policy) */
export async function resolvePolicyFile (options: { file?: string, dataDir?: string }): Promise<string | undefined> {
  if (options.file != null) { return resolve(options.file) }
  if (options.dataDir == null) { return undefined }
  const path = join(options.dataDir, POLICY_FILE)
  try {
    await access(path)
    return path
  } catch {
    return undefined
  }
}

/**
 * The policy a node starts with: the file (watched and reloaded) or the
 * default policy. Throws PolicyError, naming the line, when the file is bad:
 * a node must not start on a policy it cannot read.
 */
export async function openNodePolicy (options: NodePolicyOptions = {}): Promise<NodePolicy> {
  const file = await resolvePolicyFile(options)
  if (file == null) {
    const engine = new PolicyEngine(defaultPolicy())
    return { current: () => engine, stop: () => {} }
  }
  const reloader = new PolicyReloader({ file, log: options.log, watch: options.watch, sighup: options.sighup })
  await reloader.start()
  return { file, current: () => reloader.engine, reloader, stop: () => { reloader.stop() } }
}
