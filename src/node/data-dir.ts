import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

/** `$DECLOUD_DATA_DIR` or `~/.decloud` */
export function defaultDataDir (): string {
  return resolve(process.env.DECLOUD_DATA_DIR ?? join(homedir(), '.decloud'))
}

export const KEY_FILE = 'peer.key'
export const DB_DIR = 'db'

/** Creates the data dir (mode 0700) if needed */
export async function ensureDataDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
}

/** Reads the node's private key, or undefined if the data dir has none yet */
export async function readKey (dir: string): Promise<PrivateKey | undefined> {
  try {
    return privateKeyFromProtobuf(await readFile(join(dir, KEY_FILE)))
  } catch (err: any) {
    if (err.code === 'ENOENT') { return undefined }
    throw new Error(`cannot read the node key ${join(dir, KEY_FILE)}: ${err.message}`)
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
