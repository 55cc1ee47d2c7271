/**
 * The wallet seed file, `<dataDir>/wallet.json`: a BIP39 mnemonic (English,
 * 24 words), created on first start with mode 0600, optionally encrypted
 * with a passphrase (scrypt → AES-256-GCM).
 *
 * The passphrase protects the file; it is not the BIP39 "25th word": the
 * keys derive from the mnemonic alone, so the 24 words written down restore
 * the wallet anywhere.
 *
 * Nothing here prints or logs the mnemonic; `exportMnemonic()` on the wallet
 * is the one way out, for a user who asks.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateMnemonic, validateMnemonic } from '@scure/bip39'
import { wordlist } from '@scure/bip39/wordlists/english.js'

/** File name of the seed file inside the data dir */
export const WALLET_FILE = 'wallet.json'
const FORMAT = 'decloud-wallet'
const VERSION = 1
/** 256 bits of entropy: 24 words */
const STRENGTH = 256
/** scrypt cost for new files (≈ 32 MiB of memory, ~0.1 s) */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1 }
/** Bounds on scrypt parameters read from a file, so a damaged file cannot ask for gigabytes */
const MAX_SCRYPT_N = 2 ** 20
const MAX_SCRYPT_R = 32
const MAX_SCRYPT_P = 16
/** scrypt needs 128 × N × r bytes: at most 256 MiB (new files need 32 MiB) */
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
/** A seed file is a few hundred bytes; anything far larger is not one */
const MAX_FILE_SIZE = 64 * 1024

/** The seed file is missing, unreadable, damaged, or has unsafe permissions */
export class WalletFileError extends Error {
  static override name = 'WalletFileError'
  override name = 'WalletFileError'
}

/** The passphrase does not open the encrypted seed file */
export class WrongPassphraseError extends Error {
  static override name = 'WrongPassphraseError'
  override name = 'WrongPassphraseError'
}

/** The seed file is encrypted and no passphrase was given */
export class PassphraseRequiredError extends Error {
  static override name = 'PassphraseRequiredError'
  override name = 'PassphraseRequiredError'
}

/** The mnemonic is not 12–24 valid English BIP39 words with a correct checksum */
export class InvalidMnemonicError extends Error {
  static override name = 'InvalidMnemonicError'
  override name = 'InvalidMnemonicError'
}

interface PlainFile {
  format: typeof FORMAT
  version: number
  mnemonic: string
}

interface EncryptedFile {
  format: typeof FORMAT
  version: number
  kdf: { name: 'scrypt', salt: string, N: number, r: number, p: number }
  cipher: { name: 'aes-256-gcm', iv: string, tag: string, data: string }
}

export interface MnemonicOptions {
  /** encrypt the file with this passphrase (and require it to open the file) */
  passphrase?: string
}

export function walletFilePath (dataDir: string): string {
  return join(dataDir, WALLET_FILE)
}

/** A new 24-word English mnemonic */
export function newMnemonic (): string {
  return generateMnemonic(wordlist, STRENGTH)
}

/**
 * Checks and normalises a mnemonic a user typed: words separated by any
 * whitespace, any case. Throws `InvalidMnemonicError` (without echoing the
 * words) when the words or the checksum are wrong.
 */
export function normaliseMnemonic (mnemonic: string): string {
  const words = mnemonic.normalize('NFKD').trim().toLowerCase().split(/\s+/)
  const normal = words.join(' ')
  if (![12, 15, 18, 21, 24].includes(words.length) || !validateMnemonic(normal, wordlist)) {
    throw new InvalidMnemonicError(`not a valid BIP39 mnemonic (${words.length} words; expected 12–24 English words with a valid checksum)`)
  }
  return normal
}

async function deriveKey (passphrase: string, salt: Uint8Array, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize('NFKC'), salt, 32, { N, r, p, maxmem: 256 * N * r }, (err, key) => {
      if (err != null) { reject(err) } else { resolve(key) }
    })
  })
}

/** The authenticated header: the KDF parameters cannot be swapped without breaking the tag */
function aad (kdf: EncryptedFile['kdf']): Buffer {
  return Buffer.from(`${FORMAT}/${VERSION}/scrypt/${kdf.salt}/${kdf.N}/${kdf.r}/${kdf.p}`)
}

async function encrypt (mnemonic: string, passphrase: string): Promise<EncryptedFile> {
  const salt = randomBytes(16)
  const iv = randomBytes(12)
  const kdf = { name: 'scrypt' as const, salt: salt.toString('base64'), ...SCRYPT }
  const key = await deriveKey(passphrase, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(aad(kdf))
  const data = Buffer.concat([cipher.update(mnemonic, 'utf8'), cipher.final()])
  return {
    format: FORMAT,
    version: VERSION,
    kdf,
    cipher: { name: 'aes-256-gcm', iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64') }
  }
}

function inRange (n: unknown, min: number, max: number): boolean {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= min && n <= max
}

/** Encryption parameters as this version writes them, within bounds */
function validParameters (file: EncryptedFile): boolean {
  const { kdf, cipher: c } = file
  if (kdf?.name !== 'scrypt' || c?.name !== 'aes-256-gcm') { return false }
  if (!inRange(kdf.N, 2, MAX_SCRYPT_N) || (kdf.N & (kdf.N - 1)) !== 0 || !inRange(kdf.r, 1, MAX_SCRYPT_R) || !inRange(kdf.p, 1, MAX_SCRYPT_P)) { return false }
  if (128 * kdf.N * kdf.r > MAX_SCRYPT_MEMORY) { return false }
  return [kdf.salt, c.iv, c.tag, c.data].every(x => typeof x === 'string')
}

async function decrypt (file: EncryptedFile, passphrase: string, path: string): Promise<string> {
  if (!validParameters(file)) { throw new WalletFileError(`wallet file ${path} is damaged (unknown encryption parameters)`) }
  const { kdf, cipher: c } = file
  const iv = Buffer.from(c.iv, 'base64')
  const tag = Buffer.from(c.tag, 'base64')
  if (iv.byteLength !== 12 || tag.byteLength !== 16) { throw new WalletFileError(`wallet file ${path} is damaged (bad iv or tag)`) }
  const key = await deriveKey(passphrase, Buffer.from(kdf.salt, 'base64'), kdf.N, kdf.r, kdf.p)
  let plain: string
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv)
    decipher.setAAD(aad(kdf))
    decipher.setAuthTag(tag)
    plain = Buffer.concat([decipher.update(Buffer.from(c.data, 'base64')), decipher.final()]).toString('utf8')
  } catch {
    // GCM authenticates: a wrong passphrase never yields other words
    throw new WrongPassphraseError(`wrong passphrase for wallet file ${path}`)
  }
  try {
    return normaliseMnemonic(plain)
  } catch {
    throw new WalletFileError(`wallet file ${path} decrypts to something that is not a mnemonic`)
  }
}

/** True when a file mode lets group or others read, write or execute */
function tooOpen (mode: number): boolean {
  return process.platform !== 'win32' && (mode & 0o077) !== 0
}

/**
 * Writes a new seed file, never over an existing one (flag `wx`), with mode
 * 0600, then checks the mode on disk.
 */
export async function writeWalletFile (dataDir: string, mnemonic: string, options: MnemonicOptions = {}): Promise<void> {
  const path = walletFilePath(dataDir)
  const normal = normaliseMnemonic(mnemonic)
  const content: PlainFile | EncryptedFile = options.passphrase != null && options.passphrase !== ''
    ? await encrypt(normal, options.passphrase)
    : { format: FORMAT, version: VERSION, mnemonic: normal }
  try {
    await writeFile(path, JSON.stringify(content, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    if (err?.code === 'EEXIST') { throw new WalletFileError(`wallet file ${path} already exists; refusing to overwrite a seed (move it away first)`) }
    throw err
  }
  let { mode } = await stat(path)
  if (tooOpen(mode)) {
    // an odd umask or file system: tighten, and give up if it does not stick
    await chmod(path, 0o600)
    mode = (await stat(path)).mode
    if (tooOpen(mode)) { throw new WalletFileError(`wallet file ${path} has mode ${(mode & 0o777).toString(8)} and cannot be made 600`) }
  }
}

/**
 * Reads the mnemonic from the seed file. Refuses a file that group or others
 * can read; an encrypted file needs its passphrase.
 */
export async function readWalletFile (dataDir: string, options: MnemonicOptions = {}): Promise<string> {
  const path = walletFilePath(dataDir)
  const st = await stat(path)
  if (!st.isFile()) { throw new WalletFileError(`wallet file ${path} is not a regular file`) }
  if (tooOpen(st.mode)) {
    throw new WalletFileError(`wallet file ${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`)
  }
  if (st.size > MAX_FILE_SIZE) { throw new WalletFileError(`wallet file ${path} is too large to be a seed file`) }
  let file: Partial<PlainFile & EncryptedFile>
  try {
    file = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    throw new WalletFileError(`wallet file ${path} is not valid JSON`)
  }
  if (file == null || typeof file !== 'object' || file.format !== FORMAT) { throw new WalletFileError(`${path} is not a decloud wallet file`) }
  if (file.version !== VERSION) { throw new WalletFileError(`wallet file ${path} has version ${String(file.version)}; this decloud reads version ${VERSION}`) }
  if (file.cipher != null) {
    if (options.passphrase == null || options.passphrase === '') { throw new PassphraseRequiredError(`wallet file ${path} is encrypted; give its passphrase to open it`) }
    return decrypt(file as EncryptedFile, options.passphrase, path)
  }
  if (typeof file.mnemonic !== 'string') { throw new WalletFileError(`wallet file ${path} holds no mnemonic`) }
  if (options.passphrase != null && options.passphrase !== '') {
    throw new WalletFileError(`wallet file ${path} is not encrypted, but a passphrase was given; open it without one`)
  }
  try {
    return normaliseMnemonic(file.mnemonic)
  } catch {
    throw new WalletFileError(`wallet file ${path} holds an invalid mnemonic`)
  }
}

/**
 * The data dir's mnemonic: read from the seed file, or a new one written on
 * first start. `created` says which.
 */
export async function loadOrCreateMnemonic (dataDir: string, options: MnemonicOptions = {}): Promise<{ mnemonic: string, created: boolean }> {
  try {
    return { mnemonic: await readWalletFile(dataDir, options), created: false }
  } catch (err: any) {
    if (err?.code !== 'ENOENT') { throw err }
  }
  const mnemonic = newMnemonic()
  try {
    await writeWalletFile(dataDir, mnemonic, options)
  } catch (err: any) {
    // another process created it between our read and write: use theirs
    if (err instanceof WalletFileError && /already exists/.test(err.message)) {
      return { mnemonic: await readWalletFile(dataDir, options), created: false }
    }
    throw err
  }
  return { mnemonic, created: true }
}

/**
 * Restores a wallet from its words: validates them and writes the seed file
 * (refusing to replace an existing one).
 */
export async function restoreMnemonic (dataDir: string, mnemonic: string, options: MnemonicOptions = {}): Promise<string> {
  const normal = normaliseMnemonic(mnemonic)
  await writeWalletFile(dataDir, normal, options)
  return normal
}
