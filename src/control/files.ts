import { randomBytes } from 'node:crypto'
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

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
    throw new Error(`cannot read the control files in ${dataDir}: ${err.message}`)
  }
  if (!/^[0-9a-f]{64}$/.test(token)) { return undefined }
  return { info, token }
}
