/** `GET /v1/reputation[?peer=ID]`: trust and why (docs/control-api.md, docs/reputation.md) */
import { peerIdFromString } from '@libp2p/peer-id'
import { reputationJson } from '../reputation/json.js'
import { API_PREFIX } from './api.js'
import { HttpError, badRequest, parseQuery } from './http.js'
import type { Endpoint, RouteContext } from './http.js'

export function reputationRoutes (ctx: RouteContext): Array<[string, Endpoint]> {
  return [[`${API_PREFIX}/reputation`, {
    method: 'GET',
    run: async (req) => {
      const p = parseQuery(req.url, ['peer'])
      const rep = ctx.node.reputation
      if (rep == null) { throw new HttpError(404, 'not-found', 'this node keeps no reputation') }
      const raw = p.get('peer')
      let peer: string | undefined
      if (raw != null) {
        try {
          peer = peerIdFromString(raw.startsWith('oc:') ? raw.slice(3) : raw).toString()
        } catch {
          throw badRequest('peer: not a peer id')
        }
      }
      return reputationJson(rep, peer)
    }
  }]]
}
