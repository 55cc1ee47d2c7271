/** `/v1/wallet…`, `/v1/promises` and `/v1/chain/mine`: the node's money (docs/control-api.md) */
import { sentJson, walletJson, walletTxJson, API_PREFIX } from './api.js'
import { HttpError, badRequest, jsonObject, parseQuery, paymentsOf, queryInt, satsField } from './http.js'
import type { Endpoint, RouteContext } from './http.js'

export function walletRoutes (ctx: RouteContext): Array<[string, Endpoint]> {
  const node = ctx.node
  return [
    [`${API_PREFIX}/wallet`, { method: 'GET', run: async () => wallet() }],
    [`${API_PREFIX}/wallet/address`, { method: 'POST', run: async () => ({ address: await paymentsOf(node).wallet.newAddress() }) }],
    [`${API_PREFIX}/wallet/send`, { method: 'POST', run: async (req) => walletSend(await ctx.readJson(req)) }],
    [`${API_PREFIX}/wallet/history`, { method: 'GET', run: async (req) => walletHistory(req.url) }],
    [`${API_PREFIX}/promises`, { method: 'GET', run: async () => promises() }],
    [`${API_PREFIX}/chain/mine`, { method: 'POST', run: async (req) => mine(await ctx.readJson(req)) }]
  ]

  /** GET /v1/wallet */
  async function wallet (): Promise<unknown> {
    const p = paymentsOf(node)
    try {
      return await walletJson(p.wallet, p.backend)
    } catch (err: any) {
      throw new HttpError(502, 'chain', `the chain backend did not answer: ${String(err?.message ?? err)}`)
    }
  }

  /** POST /v1/wallet/send {address, amount, feeRate?} */
  async function walletSend (v: unknown): Promise<unknown> {
    const p = paymentsOf(node)
    const o = jsonObject(v)
    if (typeof o.address !== 'string' || o.address.length === 0 || o.address.length > 128) { throw badRequest('address: a bitcoin address is required') }
    const amount = satsField('amount', o.amount)
    if (amount == null || amount === 0n) { throw badRequest('amount: a positive integer number of satoshis (decimal string) is required') }
    const feeRate = satsField('feeRate', o.feeRate)
    try {
      return sentJson(await p.wallet.send(o.address, amount, feeRate != null ? { feeRate } : {}))
    } catch (err: any) {
      if (err?.name === 'InsufficientFundsError') { throw new HttpError(400, 'insufficient-funds', String(err.message)) }
      // the wallet's checks of the address (TypeError), amount and fee rate (RangeError), and a refused transaction
      if (err instanceof TypeError || err instanceof RangeError || err?.name === 'TxRejectedError') { throw badRequest(String(err.message)) }
      throw new HttpError(502, 'chain', `the payment failed: ${String(err?.message ?? err)}`)
    }
  }

  /** GET /v1/wallet/history?limit=N */
  async function walletHistory (url: string | undefined): Promise<unknown> {
    const p = paymentsOf(node)
    const q = parseQuery(url, ['limit'])
    const limit = queryInt('limit', q.get('limit'), 1, 1000, 100)
    try {
      return { transactions: (await p.wallet.history(limit)).map(walletTxJson) }
    } catch (err: any) {
      throw new HttpError(502, 'chain', `the chain backend did not answer: ${String(err?.message ?? err)}`)
    }
  }

  /** GET /v1/promises: this node's deferred promises not settled yet */
  async function promises (): Promise<unknown> {
    const list = await paymentsOf(node).promises.outstanding()
    return { promises: JSON.parse(JSON.stringify(list, (_k, x) => typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? undefined : x)) }
  }

  /** POST /v1/chain/mine {blocks, address?} (regtest) */
  async function mine (v: unknown): Promise<unknown> {
    const p = paymentsOf(node)
    const backend = p.backend as Partial<{ mine(n: number, address: string): Promise<number> }>
    if (typeof backend.mine !== 'function') { throw new HttpError(404, 'not-found', `the chain ${p.backend.description} cannot mine (regtest only)`) }
    const o = jsonObject(v)
    if (typeof o.blocks !== 'number' || !Number.isInteger(o.blocks) || o.blocks < 1 || o.blocks > 1000) { throw badRequest('blocks: an integer from 1 to 1000') }
    if (o.address != null && (typeof o.address !== 'string' || o.address.length > 128)) { throw badRequest('address: a bitcoin address') }
    const address = typeof o.address === 'string' ? o.address : await p.wallet.newAddress()
    try {
      const height = await backend.mine(o.blocks, address)
      return { height, address }
    } catch (err: any) {
      throw new HttpError(400, 'bad-request', `cannot mine: ${String(err?.message ?? err)}`)
    }
  }
}
