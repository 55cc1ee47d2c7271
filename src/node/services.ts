/**
 * The running side of a node's payments as a libp2p service. The parts are
 * opened before libp2p (the chain, the wallet, the policy: their stages go
 * into OpenCloud's pipeline when it is built); this service runs what needs
 * a live node: the tab sweep (seller side) and the fulfilment loop that pays
 * this node's own deferred promises (buyer side). libp2p starts it once the
 * node listens and stops it before connections close.
 */
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import type { NodePayments, PaymentParts } from './payments.js'
import type { NodePolicy } from '../policy/reload.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { Startable } from '@libp2p/interface'

/** What the payments service uses of a libp2p node: OpenCloud (the service named `opencloud`) */
export interface PaymentsComponents {
  opencloud: OpenCloud
}

export interface PaymentsServiceInit {
  /** what `openPaymentParts` opened; their `close()` stays with the opener */
  parts: PaymentParts
}

export class PaymentsService implements Startable {
  readonly [serviceCapabilities]: string[] = ['@decloud/payments']
  readonly [serviceDependencies]: string[] = ['@decloud/opencloud']
  readonly [Symbol.toStringTag] = '@decloud/payments'
  private readonly components: PaymentsComponents
  private readonly parts: PaymentParts
  private running = false

  constructor (components: PaymentsComponents, init: PaymentsServiceInit) {
    this.components = components
    this.parts = init.parts
  }

  /** Chain, wallet, tabs and promises, when payments are on */
  get payments (): NodePayments | undefined {
    return this.parts.payments
  }

  /** The policy in force, when one is */
  get policy (): NodePolicy | undefined {
    return this.parts.policy
  }

  isStarted (): boolean {
    return this.running
  }

  // libp2p's start phase: OpenCloud is starting alongside
  start (): void {}

  /** The sweep and the fulfilment loop, once OpenCloud serves and the node listens */
  async afterStart (): Promise<void> {
    if (this.running) { return }
    this.running = true
    await this.parts.start(this.components.opencloud)
  }

  /** A fulfilment round in flight finishes on live connections */
  async beforeStop (): Promise<void> {
    if (!this.running) { return }
    this.running = false
    await this.parts.stop()
  }

  async stop (): Promise<void> {
    await this.beforeStop()
  }
}

/**
 * The payments service.
 *
 * @example
 * ```ts
 * const parts = await openPaymentParts({ dataDir, store, payments: {} })
 * const node = await createLibp2p({ ..., services: { opencloud: openCloud({ access: parts.access, payment: parts.payment }), payments: payments({ parts }) } })
 * await node.stop()
 * await parts.close()
 * ```
 */
export function payments (init: PaymentsServiceInit): (components: PaymentsComponents) => PaymentsService {
  return (components) => new PaymentsService(components, init)
}
