/**
 * Chain credentials kept out of sight: URLs printed with their secrets
 * masked, and secrets read from a file only its owner can read (or from the
 * environment) instead of the command line, where every local user sees
 * them in the process list.
 */
import { readFileSync, statSync } from 'node:fs'

/** A secret file that cannot be used (missing, unreadable, readable by others, empty) */
export class SecretFileError extends Error {
  static override name = 'SecretFileError'
  override name = 'SecretFileError'
}

/** the largest secret file read */
const MAX_SECRET_BYTES = 4096
/** a path segment that looks like a key: long, and with a digit in it */
const KEY_LIKE = /^(?=.*[0-9])[A-Za-z0-9._~-]{20,}$/

/**
 * A URL as it may be printed: the password (or a user name standing alone,
 * as a token) as `***`, every query value as `***` (names kept), path
 * segments that look like keys (20 or more characters with a digit) as
 * `***`, no fragment. Something that is not a URL prints as `(not a URL)`.
 *
 * @example
 * ```ts
 * maskUrl('http://x:s3cret@127.0.0.1:48443/')          // 'http://x:***@127.0.0.1:48443/'
 * maskUrl('https://esplora.example/k3y0123456789abcdefgh/api?token=t') // 'https://esplora.example/***\/api?token=***'
 * ```
 */
export function maskUrl (url: string): string {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return '(not a URL)'
  }
  if (u.password !== '') {
    u.password = '***'
  } else if (u.username !== '') {
    u.username = '***'
  }
  u.pathname = u.pathname.split('/').map(s => KEY_LIKE.test(decodeURIComponent(s)) ? '***' : s).join('/')
  const names = [...u.searchParams.keys()]
  if (names.length > 0) {
    u.search = ''
    for (const name of names) { u.searchParams.append(name, '***') }
  }
  u.hash = ''
  // URL encodes the asterisks of the query and path: print them plainly
  return u.toString().replace(/%2A/gi, '*')
}

/**
 * Reads a secret (a URL with credentials, an API key) from a file: its
 * first line, trimmed. The file must be a regular file that neither group
 * nor others can read or write (like wallet.json): `chmod 600 FILE`.
 */
export function readSecretFile (file: string, what: string): string {
  let st
  try {
    st = statSync(file)
  } catch (err: any) {
    throw new SecretFileError(`${what}: cannot read ${file}: ${String(err?.code ?? err?.message ?? err)}`)
  }
  if (!st.isFile()) { throw new SecretFileError(`${what}: ${file} is not a file`) }
  if ((st.mode & 0o077) !== 0) { throw new SecretFileError(`${what}: ${file} can be read by other users (mode ${(st.mode & 0o777).toString(8)}); chmod 600 ${file}`) }
  if (st.size > MAX_SECRET_BYTES) { throw new SecretFileError(`${what}: ${file} is larger than ${MAX_SECRET_BYTES} bytes`) }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err: any) {
    throw new SecretFileError(`${what}: cannot read ${file}: ${String(err?.code ?? err?.message ?? err)}`)
  }
  const line = text.split(/\r?\n/, 1)[0].trim()
  if (line === '') { throw new SecretFileError(`${what}: ${file} is empty`) }
  return line
}

/**
 * A secret from, in order: the command-line value, the file named by the
 * `-file` option, the environment variable (when named). At most one of
 * value and file.
 * Undefined when none is given.
 */
export function secretFrom (o: { flag: string, value?: string, file?: string, env?: string }): string | undefined {
  if (o.value != null && o.file != null) { throw new SecretFileError(`give ${o.flag} or ${o.flag}-file, not both`) }
  if (o.value != null) { return o.value }
  if (o.file != null) { return readSecretFile(o.file, `${o.flag}-file`) }
  const v = o.env != null ? process.env[o.env] : undefined
  return v != null && v.trim() !== '' ? v.trim() : undefined
}
