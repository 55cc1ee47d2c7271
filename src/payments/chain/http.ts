/** HTTP helpers the bitcoind JSON-RPC and Esplora clients share: bounded bodies, fetch errors in words */
import { ChainUnavailableError } from '../types.js'

/**
 * Reads a response body as UTF-8 text, refusing more than `max` bytes
 * (checked against Content-Length first, then while streaming).
 */
export async function readBoundedText (res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0')
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => {})
    throw new ChainUnavailableError(`response of ${declared} bytes is larger than the ${max} byte limit`)
  }
  if (res.body == null) { return '' }
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) { break }
    size += value.byteLength
    if (size > max) {
      await reader.cancel().catch(() => {})
      throw new ChainUnavailableError(`response larger than the ${max} byte limit`)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks, size).toString('utf8')
}

/** a fetch failure in words: timeout, refused connection, … */
export function describeFetchError (err: any, timeoutMs: number): string {
  if (err?.name === 'TimeoutError') { return `no answer within ${timeoutMs} ms` }
  if (err?.name === 'AbortError') { return 'closed' }
  const cause = err?.cause
  const code = typeof cause?.code === 'string' ? cause.code : undefined
  if (code === 'ECONNREFUSED') { return 'connection refused' }
  return String(code ?? cause?.message ?? err?.message ?? err).slice(0, 200)
}
