import { writeFile } from 'node:fs/promises'
import { CliError, EXIT, err, out, terminalSafe } from './command.js'
import type { CallJson } from '../control/api.js'

/** Methods whose ok body has a better rendering than raw bytes */
const RENDERERS: Record<string, (body: Uint8Array) => string> = {
  // 32-byte digest → hex, as sha256sum prints it
  'sha256.hash': (body) => Buffer.from(body).toString('hex') + '\n',
  // the blob id (the lease, root and receipt are in --json)
  'storage.put': (body) => leaseId(body) + '\n',
  'storage.renew': (body) => leaseId(body) + '\n'
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The id in a put or renew answer (JSON), or the body as text from a seller that answers the bare id */
function leaseId (body: Uint8Array): string {
  const text = Buffer.from(body).toString('utf8')
  try {
    const id = JSON.parse(text)?.id
    return typeof id === 'string' ? id : text
  } catch {
    return text
  }
}

/** Valid UTF-8 with no control characters other than tab, CR and LF */
function isText (body: Uint8Array): boolean {
  let s: string
  try {
    s = utf8.decode(body)
  } catch {
    return false
  }
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s)
}

/** The body as JSON text, when it is a JSON object or array */
function asJson (body: Uint8Array): unknown {
  const first = body.find(b => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09)
  if (first !== 0x7b && first !== 0x5b) { return undefined }
  try {
    return JSON.parse(utf8.decode(body))
  } catch {
    return undefined
  }
}

export interface PrintCallOptions {
  /** `service.method` */
  name: string
  result: CallJson
  body: Uint8Array
  /** write the body to this file */
  out?: string
  /** print the whole response as one JSON object */
  json: boolean
}

/**
 * Prints a call's answer as `decloud call` documents it, and returns the
 * exit code: 0 for ok, 1 for any other status.
 */
export async function printCall (o: PrintCallOptions): Promise<number> {
  const ok = o.result.status === 'ok'
  if (o.json) { await out(JSON.stringify(o.result) + '\n') }
  if (!ok) {
    // the detail is the seller's text: err() shows its terminal controls as escapes
    await err(`${o.result.status}${o.result.detail !== '' ? `: ${o.result.detail}` : ''}`)
    return EXIT.FAILURE
  }
  if (o.out != null && o.out !== '-') {
    try {
      await writeFile(o.out, o.body)
    } catch (e: any) {
      throw new CliError(`cannot write ${o.out}: ${e.message}`)
    }
    return EXIT.OK
  }
  if (o.json) { return EXIT.OK }
  if (o.out === '-') {
    await out(o.body)
    return EXIT.OK
  }
  const render = Object.hasOwn(RENDERERS, o.name) ? RENDERERS[o.name] : undefined
  if (render != null) {
    await out(render(o.body))
    return EXIT.OK
  }
  if (o.body.byteLength === 0) { return EXIT.OK }
  const tty = process.stdout.isTTY === true
  const parsed = asJson(o.body)
  if (parsed !== undefined) {
    // pretty for people; byte-exact (numbers untouched) for pipes
    // JSON.stringify escapes C0 controls but not C1 ones or bidi overrides: a terminal gets them escaped too
    await out(tty ? terminalSafe(JSON.stringify(parsed, null, 2)) + '\n' : Buffer.from(o.body).toString('utf8').trimEnd() + '\n')
    return EXIT.OK
  }
  if (tty) {
    if (!isText(o.body)) {
      throw new CliError(`the answer is ${o.body.byteLength} bytes of binary data: use --out FILE or redirect stdout`, EXIT.USAGE)
    }
    const text = terminalSafe(Buffer.from(o.body).toString('utf8'))
    await out(text.endsWith('\n') ? text : text + '\n')
    return EXIT.OK
  }
  // raw bytes for pipes and files: `decloud call … storage.get ID > copy`
  await out(o.body)
  return EXIT.OK
}
