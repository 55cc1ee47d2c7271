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
import { NotStartedError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { defaultPolicy } from './defaults.js'
import { PolicyEngine } from './engine.js'
import { loadPolicyFile } from './parse.js'
import type { Policy } from './schema.js'
import type { Logger, Startable } from '@libp2p/interface'
import type { FSWatcher } from 'node:fs'

/** The policy file a data dir may hold */
export const POLICY_FILE = 'policy.yaml'

export interface PolicyReloaderInit {
  file: string
  /**
   * The file may be missing: then the default policy is in force, and the
   * file takes effect once it appears (a node's `<dataDir>/policy.yaml`).
   * Without it a missing file is an error like any other.
   *
   * @default false
   */
  optional?: boolean
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

/** The outcome of one reload, for whoever reports reloads (the CLI prints one line each) */
export type PolicyReloadEvent =
  /** `file` undefined: the optional file is missing, the default policy is in force */
  | { ok: true, file?: string, rules: number }
  | { ok: false, file: string, error: Error }

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
  /** whether the engine in force comes from the file (not the default policy of a missing optional file) */
  private fromFile = false
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

  /** The file the policy in force was read from; undefined while an optional file is missing (default policy) */
  get inForce (): string | undefined {
    return this.fromFile ? this.file : undefined
  }

  /** The engine in force */
  get engine (): PolicyEngine {
    if (this.current == null) { throw new NotStartedError('the policy reloader is not started') }
    return this.current
  }

  /** Reads the file (throws PolicyError when it is bad), then watches it */
  async start (): Promise<void> {
    if (this.started) { return }
    const policy = await this.read()
    this.current = new PolicyEngine(policy ?? defaultPolicy())
    this.fromFile = policy != null
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

  /** The file's policy; undefined when an optional file is missing */
  private async read (): Promise<Policy | undefined> {
    if (this.init.optional === true && !await exists(this.file)) { return undefined }
    return loadPolicyFile(this.file)
  }

  private async load (): Promise<ReloadResult> {
    try {
      const policy = await this.read()
      const engine = new PolicyEngine(policy ?? defaultPolicy())
      if (!this.started) { return { ok: true, engine, changed: false } }
      this.current = engine
      this.fromFile = policy != null
      this.lastError = undefined
      this.reloads++
      this.log('policy reloaded from %s: %d rules', this.inForce ?? 'the default policy', engine.size)
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
  /** called after every reload, good or refused (not at start) */
  onReload?(event: PolicyReloadEvent): void
}

export interface NodePolicy {
  /** the file in force, undefined for the default policy (changes when `<dataDir>/policy.yaml` appears or goes) */
  readonly file?: string
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
  return await exists(path) ? path : undefined
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/**
 * The policy a node starts with: the file (watched and reloaded) or the
 * default policy. Throws PolicyError, naming the line, when the file is bad:
 * a node must not start on a policy it cannot read.
 *
 * Without `--policy FILE` the data dir's `policy.yaml` is optional: a node
 * started without one watches the data dir (and listens for SIGHUP), so a
 * file written later takes effect; a file removed later brings back the
 * default policy, as a restart would.
 */
export async function openNodePolicy (options: NodePolicyOptions = {}): Promise<NodePolicy> {
  const optional = options.file == null
  let file: string | undefined
  if (options.file != null) {
    file = resolve(options.file)
  } else if (options.dataDir != null) {
    file = join(options.dataDir, POLICY_FILE)
  }
  if (file == null) {
    const engine = new PolicyEngine(defaultPolicy())
    return { current: () => engine, stop: () => {} }
  }
  const report = options.onReload
  const reloader = new PolicyReloader({
    file,
    optional,
    log: options.log,
    watch: options.watch,
    sighup: options.sighup,
    ...(report != null
      ? {
          onReload: (engine) => { report({ ok: true, file: reloader.inForce, rules: engine.size }) },
          onError: (error) => { report({ ok: false, file, error }) }
        }
      : {})
  })
  await reloader.start()
  return { get file () { return reloader.inForce }, current: () => reloader.engine, reloader, stop: () => { reloader.stop() } }
}
