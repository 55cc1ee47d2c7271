/** `GET /v1/sellers` and `GET /v1/market`: who sells what, at what price (docs/control-api.md) */
import { marketJson, sellersJson } from '../node/reports.js'
import { API_PREFIX } from './api.js'
import { HttpError, badRequest, nameField, parseQuery, queryInt, queryUnits } from './http.js'
import type { ControlledNode, Endpoint, RouteContext } from './http.js'
import type { SellersQuery } from '../node/reports.js'

/** Default and largest `timeout` of `GET /v1/sellers` (ms) */
export const DEFAULT_SELLERS_TIMEOUT = 10_000
export const MAX_SELLERS_TIMEOUT = 120_000
/** Largest `limit` of `GET /v1/sellers` (the DHT's k) */
export const MAX_SELLERS_LIMIT = 20

/** The node's seller ranking with the node itself left out, or 404 when it has no market */
export function rankerOf (node: ControlledNode): { market: NonNullable<ControlledNode['market']>, rankSellers: NonNullable<ControlledNode['rankSellers']> } {
  const market = node.market
  const rank = node.rankSellers
  if (market == null || rank == null) { throw new HttpError(404, 'not-found', 'this node has no market: no seller lookup') }
  const self = node.peerId.toString()
  return {
    market,
    // sellers other than this node: the DHT lookup leaves it out, so must the price book
    rankSellers: async (s, o) => rank.call(node, s, { ...o, exclude: [...(o.exclude ?? []), self] })
  }
}

export function marketRoutes (ctx: RouteContext): Array<[string, Endpoint]> {
  const node = ctx.node
  return [
    [`${API_PREFIX}/sellers`, { method: 'GET', run: async (req, res) => sellers(req.url, res) }],
    [`${API_PREFIX}/market`, { method: 'GET', run: async (req) => market(req.url) }]
  ]

  /** GET /v1/sellers: the DHT lookup joined with the price book, cheapest first */
  async function sellers (url: string | undefined, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    const p = parseQuery(url, ['service', 'method', 'units', 'timeout', 'limit'])
    const service = nameField('service', p.get('service'))
    if (service == null) { throw badRequest('service: required (e.g. ?service=storage)') }
    const method = nameField('method', p.get('method'))
    const usage = queryUnits(p.get('units'))
    const timeout = queryInt('timeout', p.get('timeout'), 1, MAX_SELLERS_TIMEOUT, DEFAULT_SELLERS_TIMEOUT)
    const limit = p.has('limit') ? queryInt('limit', p.get('limit'), 1, MAX_SELLERS_LIMIT, MAX_SELLERS_LIMIT) : undefined
    const ranker = rankerOf(node)
    const flight = ctx.begin(res)
    const q: SellersQuery = { service, method, usage, timeout, limit, signal: flight.signal }
    try {
      const answer = await sellersJson(ranker, q)
      // the price book is not bounded by the DHT's limit
      if (limit != null && answer.sellers.length > limit) { answer.sellers = answer.sellers.slice(0, limit) }
      return answer
    } catch (err: any) {
      if (flight.signal.aborted) { throw new HttpError(503, 'busy', String(flight.signal.reason?.message ?? 'aborted')) }
      throw new HttpError(502, 'transport', `the seller lookup failed: ${String(err?.message ?? err)}`)
    } finally {
      flight.end()
    }
  }

  /** GET /v1/market: the price book summary */
  function market (url: string | undefined): unknown {
    const p = parseQuery(url, ['service', 'method', 'units'])
    const service = nameField('service', p.get('service'))
    const method = nameField('method', p.get('method'))
    const usage = queryUnits(p.get('units'))
    const book = node.market
    if (book == null) { throw new HttpError(404, 'not-found', 'this node has no market') }
    return marketJson({ market: book }, { service, method, usage })
  }
}
