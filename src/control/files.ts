import { randomBytes } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { constants } from 'node:os'
import { join } from 'node:path'
import { InvalidParametersError } from '@libp2p/interface'

/** `<dataDir>/control.json`: where the running node's control API listens */
export const CONTROL_FILE = 'control.json'
/** `<dataDir>/control.token`: the bearer token, hex, mode 0600 */
export const TOKEN_FILE = 'control.token'

/** The control API only ever listens here */
export const CONTROL_HOST = '127.0.0.1'

/** Contents of control.json */
export interface ControlFile {
  port: number
  pid: number
  /** decloud version of the running node */
  version: string
}

/** A fresh random token: 32 bytes, hex */
export function newToken (): string {
  return randomBytes(32).toString('hex')
}

/**
 * Writes the token (mode 0600, replacing any stale file) and then
 * control.json (atomically), so whoever sees control.json finds the token.
 */
export async function writeControlFiles (dataDir: string, info: ControlFile, token: string): Promise<void> {
  const tokenPath = join(dataDir, TOKEN_FILE)
  // a stale file may have other permissions: never write the secret into it
  await rm(tokenPath, { force: true })
  await writeFile(tokenPath, token + '\n', { mode: 0o600, flag: 'wx' })
  await chmod(tokenPath, 0o600)
  const controlPath = join(dataDir, CONTROL_FILE)
  const tmp = `${controlPath}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(info) + '\n', { mode: 0o600 })
  await rename(tmp, controlPath)
}

/** Removes both files; missing files are fine */
export async function removeControlFiles (dataDir: string): Promise<void> {
  await rm(join(dataDir, CONTROL_FILE), { force: true })
  await rm(join(dataDir, TOKEN_FILE), { force: true })
}

/** Reads control.json and the token; undefined when either is missing or malformed */
export async function readControlFiles (dataDir: string): Promise<{ info: ControlFile, token: string } | undefined> {
  let info: ControlFile
  let token: string
  try {
    const raw = JSON.parse(await readFile(join(dataDir, CONTROL_FILE), 'utf8'))
    if (!Number.isInteger(raw?.port) || raw.port <= 0 || raw.port > 65535 || !Number.isInteger(raw.pid)) { return undefined }
    info = { port: raw.port, pid: raw.pid, version: String(raw.version ?? 'unknown') }
    token = (await readFile(join(dataDir, TOKEN_FILE), 'utf8')).trim()
  } catch (err: any) {
    if (err.code === 'ENOENT' || err instanceof SyntaxError) { return undefined }
    throw new InvalidParametersError(`cannot read the control files in ${dataDir}: ${err.message}`)
  }
  if (!/^[0-9a-f]{64}$/.test(token)) { return undefined }
  return { info, token }
}

/**
 * Signals whose default action ends the process. Whatever ends it, the
 * control files of this process go with it (a clean stop removes them
 * itself; SIGKILL cannot be caught).
 */
const ENDING_SIGNALS = (['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGXCPU', 'SIGXFSZ'] as NodeJS.Signals[])
  .filter(s => process.platform !== 'win32' && constants.signals[s] != null)

/** Data dirs holding control files of this process */
const owned = new Set<string>()

/** Removes the control files of `dataDir` now, if this process wrote them (control.json names its pid) */
function removeOwnSync (dataDir: string): void {
  try {
    const info = JSON.parse(readFileSync(join(dataDir, CONTROL_FILE), 'utf8'))
    if (info?.pid !== process.pid) { return }
    rmSync(join(dataDir, CONTROL_FILE), { force: true })
    rmSync(join(dataDir, TOKEN_FILE), { force: true })
  } catch {
    // gone or unreadable: nothing of ours to remove
  }
}

function removeAllSync (): void {
  for (const dir of owned) { removeOwnSync(dir) }
  owned.clear()
}

function onEndingSignal (signal: NodeJS.Signals): void {
  // someone else handles it (the CLI's clean stop, a reload): it does not end the process here
  if (process.listenerCount(signal) > 1) { return }
  removeAllSync()
  uninstall()
  // no listener left: the signal's default action again, which ends the process as it would have
  process.kill(process.pid, signal)
}

function install (): void {
  process.on('exit', removeAllSync)
  for (const s of ENDING_SIGNALS) { process.on(s, onEndingSignal) }
}

function uninstall (): void {
  process.off('exit', removeAllSync)
  for (const s of ENDING_SIGNALS) { process.off(s, onEndingSignal) }
}

/**
 * Removes the control files of `dataDir` when the process ends without a
 * clean stop: `process.exit()` (a second Ctrl-C, a stop that overran its
 * deadline), an uncaught exception, or a signal nobody handles.
 */
export function removeOnExit (dataDir: string): void {
  if (owned.size === 0) { install() }
  owned.add(dataDir)
}

/** The control files of `dataDir` were removed: nothing left to do at exit */
export function keepOnExit (dataDir: string): void {
  if (!owned.delete(dataDir)) { return }
  if (owned.size === 0) { uninstall() }
}
