import { chmod, lstat, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { InvalidPrivateKeyError } from '@libp2p/interface'
import type { PrivateKey } from '@libp2p/interface'

/** `$DECLOUD_DATA_DIR` or `~/.decloud` */
export function defaultDataDir (): string {
  return resolve(process.env.DECLOUD_DATA_DIR ?? join(homedir(), '.decloud'))
}

export const KEY_FILE = 'peer.key'
export const DB_DIR = 'db'
/** the storage service's piece files (their metadata is in the db) */
export const PIECES_DIR = 'pieces'

/** Files of the data dir that hold secrets: the node key, the wallet seed, the control API token and port, the chain's API key */
export const SECRET_FILES = [KEY_FILE, 'wallet.json', 'control.token', 'control.json', join('chain', 'api-key')]

/**
 * Creates the data dir (mode 0700) if needed, and tightens the secret files
 * in it (see checkDataDir). Returns checkDataDir's warnings.
 */
export async function ensureDataDir (dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  return checkDataDir(dir)
}

/**
 * Permissions of an existing data dir. Only the dir's creation sets 0700: a
 * dir the user made (or copied, or pointed us at) keeps its mode, and other
 * users may read what the node writes there. The dir is the user's, so it
 * is not changed, only warned about; the secret files are ours and go back
 * to 0600 (each with a warning). Returns one line per finding.
 */
export async function checkDataDir (dir: string): Promise<string[]> {
  const warnings: string[] = []
  let mode: number
  try {
    mode = (await stat(dir)).mode & 0o777
  } catch (err: any) {
    if (err.code === 'ENOENT') { return warnings }
    throw err
  }
  if (process.platform === 'win32') { return warnings }
  if ((mode & 0o077) !== 0) {
    warnings.push(`the data dir ${dir} is open to other users (mode ${octal(mode)}): they may read the node's data; chmod 700 ${dir}`)
  }
  for (const name of SECRET_FILES) {
    const path = join(dir, name)
    let m: number
    try {
      const s = await lstat(path)
      // a link may point anywhere: never chmod through it
      if (!s.isFile()) { continue }
      m = s.mode & 0o777
    } catch {
      continue
    }
    if ((m & 0o077) !== 0) {
      await chmod(path, 0o600)
      warnings.push(`${path} was open to other users (mode ${octal(m)}): now 0600`)
    }
  }
  return warnings
}

const octal = (mode: number): string => mode.toString(8).padStart(4, '0')

/** Reads the node's private key, or undefined if the data dir has none yet */
export async function readKey (dir: string): Promise<PrivateKey | undefined> {
  try {
    return privateKeyFromProtobuf(await readFile(join(dir, KEY_FILE)))
  } catch (err: any) {
    if (err.code === 'ENOENT') { return undefined }
    throw new InvalidPrivateKeyError(`cannot read the node key ${join(dir, KEY_FILE)}: ${err.message}`)
  }
}

/** Loads the node's Ed25519 key from the data dir, creating it (mode 0600) on first start */
export async function loadOrCreateKey (dir: string): Promise<PrivateKey> {
  const existing = await readKey(dir)
  if (existing != null) { return existing }
  const key = await generateKeyPair('Ed25519')
  // 'wx': never overwrite a key another process just wrote
  try {
    await writeFile(join(dir, KEY_FILE), privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    if (err.code === 'EEXIST') { return (await readKey(dir)) as PrivateKey }
    throw err
  }
  await chmod(join(dir, KEY_FILE), 0o600)
  return key
}

/** Another decloud process holds the data dir's database */
export class DataDirInUseError extends Error {
  static override name = 'DataDirInUseError'
  override name = 'DataDirInUseError'
}
