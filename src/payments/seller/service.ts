/**
 * The core `payments` service: where to pay, what a tab owes, and settling
 * it. All three methods are free; `settle` carries the payment itself as an
 * attached transaction naming the defer id, which the payment gate checks,
 * broadcasts and credits to the tab before the method runs.
 *
 * - `payments.address` → `{"address":"rb1q…","chain":"regtest"}`: the
 * caller's own payment address here (the same one every time). The signed
 * response is evidence of where the seller asked to be paid.
 * - `payments.tab <deferId>` → the caller's tab (JSON: accrued, paid, owed,
 * threshold, due, status); not-found when there is none.
 * - `payments.settle <deferId>` with payment-type attached and
 * `payment.defer_id` = deferId → the tab after the payment.
 * - `payments.credit` → `{"credit":"278"}`: the sats the caller paid here
 * and has not used (overpayment, calls not served), which pay its next
 * calls before any new payment is asked for.
 */
import { ServiceError } from '../../protocols/opencloud/api/template.js'
import { Status } from '../../protocols/opencloud/pb/opencloud.js'
import { json } from '../../util/json.js'
import { payerOfCall } from './gate.js'
import { DEFER_ID, tabView } from './tabs.js'
import type { CreditStore } from './credits.js'
import type { TabStore } from './tabs.js'
import type { ServiceCall, ServiceDefinition } from '../../protocols/opencloud/api/template.js'
import type { PaymentWallet } from '../types.js'

export interface PaymentsServiceInit {
  wallet: PaymentWallet
  tabs: TabStore
  /** the payment gate's credit ledger (`gate.credits`): adds `payments.credit` */
  credits?: CreditStore
}

function deferIdArg (call: ServiceCall, usage: string): string {
  if (call.args.length !== 1) { throw new ServiceError(Status.BAD_REQUEST, `usage: ${usage}`) }
  const id = call.args[0]
  if (!DEFER_ID.test(id)) { throw new ServiceError(Status.BAD_REQUEST, 'a defer id is 1 to 64 characters of A-Z a-z 0-9 . _ : -') }
  return id
}

/** The `payments` service definition */
export function paymentsService (init: PaymentsServiceInit): ServiceDefinition {
  const { wallet, tabs, credits } = init
  const credit: ServiceDefinition['methods'] = credits == null
    ? {}
    : {
        credit: {
          description: 'your unused credit here, sats (JSON): it pays your next calls first',
          handler: async (call) => {
            if (call.args.length !== 0) { throw new ServiceError(Status.BAD_REQUEST, 'usage: credit') }
            return { body: json({ credit: await credits.balance(payerOfCall(call)), currency: 'BTC' }) }
          }
        }
      }
  return {
    name: 'payments',
    version: '1.0.0',
    description: 'where to pay this node, your deferred-payment tabs, and settling them',
    describe: () => ({ chain: wallet.chain, currency: 'BTC', thresholds: ['time:<seconds>', 'value:<sats>', 'completion'] }),
    methods: {
      address: {
        description: 'your payment address at this node (JSON: address, chain)',
        handler: async (call) => {
          if (call.args.length !== 0) { throw new ServiceError(Status.BAD_REQUEST, 'usage: address') }
          const address = await wallet.addressFor(payerOfCall(call))
          return { body: json({ address, chain: wallet.chain }) }
        }
      },
      tab: {
        description: 'your tab of deferred payments under a defer id (JSON)',
        args: '<deferId>',
        handler: async (call) => {
          const deferId = deferIdArg(call, 'tab <deferId>')
          const tab = await tabs.get(payerOfCall(call), deferId)
          if (tab == null) { throw new ServiceError(Status.NOT_FOUND, `you have no tab ${deferId} here`) }
          return { body: json(tabView(tab)) }
        }
      },
      settle: {
        description: 'pays a tab: send an attached payment whose defer_id is the tab; returns the tab (JSON)',
        args: '<deferId>',
        handler: async (call) => {
          const deferId = deferIdArg(call, 'settle <deferId>')
          const p = call.payment
          if (p?.kind !== 'attached' || p.deferId !== deferId) {
            throw new ServiceError(Status.BAD_REQUEST, `settle needs payment-type attached with payment.defer_id ${deferId}`)
          }
          const tab = await tabs.get(payerOfCall(call), deferId)
          if (tab == null) { throw new ServiceError(Status.SERVER_ERROR, 'the payment was taken but its tab is missing') }
          return { body: json({ ...tabView(tab), txid: p.txid }) }
        }
      },
      ...credit
    }
  }
}
