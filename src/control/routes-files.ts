/**
 * `/v1/files…`: files stored across sellers (docs/control-api.md, docs/files.md).
 * Bodies stream both ways: an upload is read segment by segment as the
 * pipeline takes it, a download is written as segments are decoded.
 */
import { parseRedundancy } from '../files/redundancy.js'
import { API_PREFIX } from './api.js'
import { HttpError, badRequest, jsonObject, parseQuery, satsField } from './http.js'
import type { Endpoint, RouteContext } from './http.js'
import type { Files } from '../files/index.js'
import type { IncomingMessage } from 'node:http'

/** Longest wait for the next chunk of an upload (ms) */
export const UPLOAD_IDLE_TIMEOUT = 60_000
/** Longest lease asked for (s): 10 years */
const MAX_DURATION = 10 * 365 * 24 * 3600
const FILE_ID = /^[0-9a-f]{32}$/
const NAME_MAX = 255

/** The node's files, or 404 */
function filesOf (ctx: RouteContext): Files {
  const f = ctx.node.files
  if (f == null) { throw new HttpError(404, 'not-found', 'this node keeps no files') }
  return f
}

function fileId (x: unknown): string {
  if (typeof x !== 'string' || !FILE_ID.test(x)) { throw badRequest('id: a file id, 32 hex characters') }
  return x
}

/** What the pipeline's errors mean to an API client */
function httpErrorOf (err: any, signal: AbortSignal): HttpError {
  if (err instanceof HttpError) { return err }
  switch (err?.name) {
    case 'TooFewSellersError': return new HttpError(409, 'too-few-sellers', String(err.message))
    case 'NoCatalogError': return new HttpError(404, 'no-catalog', String(err.message))
    case 'NotFoundError': return new HttpError(404, 'not-found', String(err.message))
    case 'PlacementFailedError': return new HttpError(502, 'placement-failed', String(err.message))
    case 'NotEnoughPiecesError': return new HttpError(502, 'unavailable', String(err.message))
    case 'DecryptionFailedError': return new HttpError(500, 'decryption-failed', String(err.message))
    case 'RangeError': return badRequest(String(err.message))
    default: break
  }
  if (signal.aborted) { return new HttpError(499, 'aborted', String(signal.reason?.message ?? 'aborted')) }
  return new HttpError(502, 'transport', String(err?.message ?? err))
}

/**
 * The upload's chunks, failing when none arrives within `idle` ms (the
 * server's own request timeout is off for uploads)
 */
async function * idleBounded (req: IncomingMessage, idle: number): AsyncGenerator<Uint8Array> {
  const it = req[Symbol.asyncIterator]()
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new HttpError(408, 'timeout', `no upload data for ${idle} ms`)) }, idle)
      })
      try {
        const r = await Promise.race([it.next(), late])
        if (r.done === true) { return }
        yield r.value as Uint8Array
      } finally {
        clearTimeout(timer)
      }
    }
  } finally {
    await it.return?.()
  }
}

export function fileRoutes (ctx: RouteContext, limits: { uploadIdleTimeout?: number } = {}): Array<[string, Endpoint]> {
  return [
    [`${API_PREFIX}/files`, { method: 'GET', run: async () => ({ files: await filesOf(ctx).list() }) }],
    [`${API_PREFIX}/files/put`, { method: 'POST', run: async (req, res) => put(req, res) }],
    [`${API_PREFIX}/files/get`, { method: 'GET', run: async (req, res) => get(req, res) }],
    [`${API_PREFIX}/files/status`, { method: 'GET', run: async (req, res) => status(req, res) }],
    [`${API_PREFIX}/files/rm`, { method: 'POST', run: async (req, res) => remove(req, res) }],
    [`${API_PREFIX}/files/restore`, { method: 'POST', run: async (req, res) => restore(req, res) }]
  ]

  async function put (req: IncomingMessage, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    const files = filesOf(ctx)
    const q = parseQuery(req.url, ['redundancy', 'duration', 'maxPrice', 'name'])
    let redundancy
    try {
      redundancy = q.has('redundancy') ? parseRedundancy(q.get('redundancy') as string) : undefined
    } catch (err: any) {
      throw badRequest(String(err.message))
    }
    const d = q.get('duration')
    if (d != null && !(/^[0-9]{1,10}$/.test(d) && Number(d) >= 1 && Number(d) <= MAX_DURATION)) { throw badRequest(`duration: seconds, 1 to ${MAX_DURATION}`) }
    const maxPrice = satsField('maxPrice', q.get('maxPrice'))
    const name = q.get('name')
    if (name != null && (name.length > NAME_MAX || name === '')) { throw badRequest(`name: 1 to ${NAME_MAX} characters`) }
    const flight = ctx.begin(res)
    try {
      const r = await files.put(idleBounded(req, limits.uploadIdleTimeout ?? UPLOAD_IDLE_TIMEOUT), {
        ...(redundancy != null ? { redundancy } : {}),
        ...(d != null ? { duration: Number(d) } : {}),
        ...(maxPrice != null ? { maxPrice } : {}),
        ...(name != null ? { name } : {}),
        signal: flight.signal
      })
      return { id: r.id, size: r.size, k: r.k, n: r.n, segments: r.segments, sellers: r.sellers, cost: r.cost.toString(), ...(r.expiry != null ? { expiry: new Date(r.expiry).toISOString() } : {}) }
    } catch (err) {
      throw httpErrorOf(err, flight.signal)
    } finally {
      flight.end()
    }
  }

  async function get (req: IncomingMessage, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    const files = filesOf(ctx)
    const q = parseQuery(req.url, ['id', 'maxPrice'])
    const id = fileId(q.get('id'))
    const maxPrice = satsField('maxPrice', q.get('maxPrice'))
    const flight = ctx.begin(res)
    const signal = flight.signal
    try {
      const m = await files.manifest(id).catch((err) => { throw httpErrorOf(err, signal) })
      const it = files.get(id, { signal, ...(maxPrice != null ? { maxPrice } : {}) })
      // the first segment before the headers: a file that cannot be read gets an error answer, not a cut body
      const first = await it.next().catch((err) => { throw httpErrorOf(err, signal) })
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': m.size, 'cache-control': 'no-store' })
      try {
        let r = first
        while (r.done !== true) {
          if (!res.write(r.value)) { await new Promise<void>((resolve) => { res.once('drain', resolve); res.once('close', resolve) }) }
          if (res.destroyed) { break }
          r = await it.next()
        }
        res.end()
      } catch {
        // the headers are out: a short body (content-length) tells the client
        res.destroy()
      } finally {
        await it.return(undefined)
      }
      return undefined
    } finally {
      flight.end()
    }
  }

  async function status (req: IncomingMessage, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    const files = filesOf(ctx)
    const q = parseQuery(req.url, ['id', 'check'])
    const id = fileId(q.get('id'))
    const check = q.get('check')
    if (check != null && check !== 'true' && check !== 'false') { throw badRequest('check: true or false') }
    const flight = ctx.begin(res)
    try {
      return await files.status(id, { check: check === 'true', signal: flight.signal })
    } catch (err) {
      throw httpErrorOf(err, flight.signal)
    } finally {
      flight.end()
    }
  }

  /** Finds the catalog this node's seed published and writes back the manifests missing here */
  async function restore (req: IncomingMessage, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    const files = filesOf(ctx)
    jsonObject(await ctx.readJson(req))
    const flight = ctx.begin(res)
    try {
      return await files.restore({ signal: flight.signal })
    } catch (err) {
      throw httpErrorOf(err, flight.signal)
    } finally {
      flight.end()
    }
  }

  async function remove (req: IncomingMessage, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    const files = filesOf(ctx)
    const o = jsonObject(await ctx.readJson(req))
    const id = fileId(o.id)
    const flight = ctx.begin(res)
    try {
      return await files.remove(id, { signal: flight.signal })
    } catch (err) {
      throw httpErrorOf(err, flight.signal)
    } finally {
      flight.end()
    }
  }
}
