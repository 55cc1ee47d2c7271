/**
 * The payment side of a decloud node: chain backend, wallet, `btc:`
 * credentials, the payment gate with its tabs, the `payments` core service,
 * the client's promise book and fulfilment loop, and the policy that
 * decides who may call what at what price. `createDecloudNode` puts these
 * into the OpenCloud pipeline: access is the bitcoin credential check, then
 * the policy's access (allow/deny, rate, credentials); payment is the
 * policy's minimum payment, then the payment gate (attached, defer, tabs).
 */
import { InvalidParametersError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { p2wpkh } from '@scure/btc-signer'
import { FulfilmentLoop } from '../payments/buyer/fulfilment.js'
import { PromiseBook } from '../payments/buyer/promises.js'
import { EmbeddedChain, createChainBackend } from '../payments/chain/index.js'
import { AddressBindings, bitcoinCredentialStage, btcVerifier } from '../payments/credentials.js'
import { PaymentGate } from '../payments/seller/gate.js'
import { paymentsService } from '../payments/seller/service.js'
import { TabStore } from '../payments/seller/tabs.js'
import { canMine } from '../payments/types.js'
import { Wallet } from '../payments/wallet/wallet.js'
import { PolicyEngine } from '../policy/engine.js'
import { openNodePolicy } from '../policy/reload.js'
import { chainStages, policyStages } from '../policy/stage.js'
import { defaultPaymentGate } from '../protocols/opencloud/net/pipeline.js'
import { ListenedTabStore } from '../reputation/tabs.js'
import type { ChainBackendOptions } from '../payments/chain/index.js'
import type { ChainBackend } from '../payments/types.js'
import type { TrustProvider } from '../policy/engine.js'
import type { NodePolicy, PolicyReloadEvent } from '../policy/reload.js'
import type { Policy } from '../policy/schema.js'
import type { PolicyStages } from '../policy/stage.js'
import type { Stage } from '../protocols/opencloud/api/call.js'
import type { CredentialVerifier } from '../protocols/opencloud/api/signing.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { Reputation } from '../reputation/model.js'
import type { Store } from '../store/index.js'

export interface PaymentsOptions {
  /**
   * The chain: a backend (e.g. one embedded regtest chain shared by the
   * nodes of a test), or how to open one (`--chain`, `--bitcoind-rpc`,
   * `--esplora`). @default the embedded regtest chain in `<dataDir>/chain`
   */
  chain?: ChainBackend | ChainBackendOptions
  /** passphrase of the wallet's seed file (`DECLOUD_WALLET_PASSPHRASE` in the CLI) */
  passphrase?: string
  /**
   * On a chain that can mine (regtest), give an empty wallet coins at
   * start: its identity address (so its `btc:` credential holds coins, aged
   * past the default policy's 6 blocks) and a spending address.
   *
   * @default true on a mining backend
   */
  devFund?: boolean
  /**
   * On an embedded chain this node opened itself: mine a block every this
   * many ms while transactions wait, so payments confirm on their own (0:
   * never). @default 2_000
   */
  blockInterval?: number
  /** the largest tab a payer may run up when the policy does not say @default 100_000n */
  maxTab?: bigint
  /** confirmations an attached payment needs @default 0 (mempool acceptance) */
  minConfirmations?: number
  /** the fulfilment loop (paying this node's own deferred promises); false: off */
  fulfilment?: false | { interval?: number, lead?: number }
  /** ms an overdue tab is given before the sweep breaks it @default 15 minutes */
  tabGrace?: number
  /** ms after opening a tab falls due at the latest, whatever its threshold @default 24 hours */
  maxTabAge?: number
  /** how often overdue tabs are swept into broken promises (ms) @default 60_000 */
  sweepInterval?: number
}

export interface PolicyOptions {
  /** a policy file (YAML or JSON), watched and reloaded on change or SIGHUP */
  file?: string
  /** the rules as an object (embedders); wins over `file` */
  rules?: Policy
  /** trust of a peer (0–1) for trust bands @default the node's reputation (docs/reputation.md) */
  trust?: TrustProvider
  /** reload the file on SIGHUP (the CLI handles SIGHUP itself) @default true */
  sighup?: boolean
  /** called after every reload of the file, good or refused */
  onReload?(event: PolicyReloadEvent): void
}

/** What a node's payment side exposes */
export interface NodePayments {
  readonly backend: ChainBackend
  readonly wallet: Wallet
  readonly tabs: TabStore
  readonly gate: PaymentGate
  readonly promises: PromiseBook
  readonly fulfilment?: FulfilmentLoop
}

export interface PaymentParts {
  payments?: NodePayments
  policy?: NodePolicy
  stages?: PolicyStages
  access: Stage | undefined
  payment: Stage | undefined
  verifiers: CredentialVerifier[]
  services: ServiceDefinition[]
  /** starts timers (fulfilment, sweep); call once the node is listening */
  start(opencloud: import('../protocols/opencloud/net/opencloud.js').OpenCloud): Promise<void>
  /** stops what `start` started */
  stop(): Promise<void>
  /** closes what opening opened (the policy's watcher, a chain opened here); after `stop` */
  close(): Promise<void>
}

/** Block interval of an embedded chain a node opened itself (ms) */
export const DEV_BLOCK_INTERVAL = 2_000

/** Coins a dev wallet starts with: 1 BTC on the identity, 10 BTC to spend */
export const DEV_IDENTITY_FUND = 100_000_000n
export const DEV_SPEND_FUND = 1_000_000_000n
/**
 * The 10 BTC to spend come as this many coins: payments made at once each
 * take their own coin instead of waiting for one another's change, and
 * payments in a row make several short chains of unconfirmed change rather
 * than one long one (a mempool takes chains of at most 25)
 */
export const DEV_SPEND_COINS = 8

interface Faucet { fund(address: string, amount?: bigint): Promise<unknown>, fundEach?(addresses: string[], amount?: bigint): Promise<unknown> }
const hasFaucet = (b: ChainBackend): b is ChainBackend & Faucet => typeof (b as Partial<Faucet>).fund === 'function'

/** Opens the chain, wallet, tabs and policy of a node; nothing is started */
export async function openPaymentParts (init: {
  dataDir: string
  store: Store
  payments?: PaymentsOptions | false
  policy?: PolicyOptions | false
  /** the node's reputation: the policy's trust provider and the listener of tab events */
  reputation?: Reputation
}): Promise<PaymentParts> {
  const log = logger('decloud:node:payments')
  let policy: NodePolicy | undefined
  let stages: PolicyStages | undefined
  // a node that takes payments gets a policy unless told otherwise: without one every signed
  // caller could run up tabs (the default policy defers only for coins or trust)
  const policyOptions = init.policy ?? (init.payments != null && init.payments !== false ? {} : undefined)
  if (policyOptions !== false && policyOptions != null) {
    if (policyOptions.rules != null) {
      const engine = new PolicyEngine(policyOptions.rules)
      policy = { current: () => engine, stop: () => {} }
    } else {
      policy = await openNodePolicy({ file: policyOptions.file, dataDir: init.dataDir, log: logger('decloud:policy'), sighup: policyOptions.sighup, onReload: policyOptions.onReload })
    }
    const p = policy
    const rep = init.reputation
    stages = policyStages(() => p.current(), { trust: policyOptions.trust ?? (rep != null ? (peer) => rep.trust(peer) : undefined) })
  }

  if (init.payments === false || init.payments == null) {
    return {
      policy,
      stages,
      access: stages?.access,
      payment: stages != null ? chainStages(stages.payment, defaultPaymentGate) : undefined,
      verifiers: [],
      services: [],
      async start () {},
      async stop () {},
      async close () { policy?.stop() }
    }
  }

  const opts = init.payments
  const given = opts.chain != null && typeof (opts.chain as ChainBackend).height === 'function'
  let backend: ChainBackend
  try {
    backend = given ? opts.chain as ChainBackend : await createChainBackend({ dataDir: init.dataDir, ...(opts.chain as ChainBackendOptions | undefined) })
  } catch (err) {
    policy?.stop()
    throw err
  }
  const closeBackend = async (): Promise<void> => { if (!given) { await backend.close().catch(() => {}) } }
  if (!given && backend instanceof EmbeddedChain && (opts.blockInterval ?? DEV_BLOCK_INTERVAL) > 0) {
    backend.autoMine(opts.blockInterval ?? DEV_BLOCK_INTERVAL)
  }
  let wallet: Wallet
  try {
    wallet = await Wallet.open({ dataDir: init.dataDir, db: init.store.sub('wallet'), backend, passphrase: opts.passphrase })
    if (opts.devFund ?? (canMine(backend) && backend.chain === 'regtest')) { await devFund(backend, wallet) }
  } catch (err) {
    policy?.stop()
    await closeBackend()
    throw err
  }
  // kept and broken promises become reputation facts (the tabs answer for the evidence)
  const tabsInit = { db: init.store.sub('tabs'), grace: opts.tabGrace, maxTabAge: opts.maxTabAge }
  const rep = init.reputation
  const tabs: TabStore = rep != null ? new ListenedTabStore({ ...tabsInit, events: rep.tabEvents({ evidence: (payer, deferId) => tabs.evidence(payer, deferId) }) }) : new TabStore(tabsInit)
  const gate = new PaymentGate({
    wallet,
    backend,
    db: init.store.sub('payments'),
    tabs,
    maxTab: opts.maxTab,
    // the policy's terms for each call (defer, tab limit) reach the gate in state.policy
    minConfirmations: opts.minConfirmations
  })
  const promises = new PromiseBook({ db: init.store.sub('promises') })
  const btcStage = bitcoinCredentialStage({ bindings: new AddressBindings(init.store.sub('bindings')), backend })
  let fulfilment: FulfilmentLoop | undefined
  let sweep: ReturnType<typeof setInterval> | undefined
  const payments: NodePayments = {
    backend,
    wallet,
    tabs,
    gate,
    promises,
    get fulfilment () { return fulfilment }
  }
  return {
    payments,
    policy,
    stages,
    access: chainStages(btcStage, stages?.access),
    payment: chainStages(stages?.payment, gate.stage),
    verifiers: [btcVerifier(backend.network)],
    services: [paymentsService({ wallet, tabs, credits: gate.credits })],
    async start (opencloud) {
      // once: a second start would leave a second sweep timer and fulfilment loop behind
      if (sweep != null) { return }
      sweep = setInterval(() => {
        tabs.sweep().catch((err: any) => { log.error('tab sweep failed - %e', err) })
      }, opts.sweepInterval ?? 60_000)
      sweep.unref()
      if (opts.fulfilment !== false) {
        fulfilment = new FulfilmentLoop({ opencloud, wallet, backend, book: promises, interval: opts.fulfilment?.interval, lead: opts.fulfilment?.lead })
        await fulfilment.start()
      }
    },
    async stop () {
      clearInterval(sweep)
      sweep = undefined
      await fulfilment?.stop()
    },
    async close () {
      // the policy's file watcher and SIGHUP listener, and the chain
      policy?.stop()
      await closeBackend()
    }
  }
}

/** Gives an empty wallet on a mining chain its dev coins (see `PaymentsOptions.devFund`) */
async function devFund (backend: ChainBackend, wallet: Wallet): Promise<void> {
  if (!canMine(backend)) { return }
  const [identity] = await backend.addresses([wallet.identityAddress])
  const balance = await wallet.balance()
  if (identity.confirmed + identity.unconfirmed > 0n || balance.confirmed + balance.unconfirmed > 0n) { return }
  let funded = false
  if (hasFaucet(backend)) {
    try {
      await backend.fund(wallet.identityAddress, DEV_IDENTITY_FUND)
      const spend: string[] = []
      for (let i = 0; i < DEV_SPEND_COINS; i++) { spend.push(await wallet.newAddress()) }
      const each = DEV_SPEND_FUND / BigInt(DEV_SPEND_COINS)
      if (backend.fundEach != null) {
        await backend.fundEach(spend, each)
      } else {
        for (const address of spend) { await backend.fund(address, each) }
      }
      funded = true
    } catch {
      // e.g. Bitcoin Core's regtest without a loaded wallet (sendtoaddress fails): block rewards instead
    }
  }
  if (!funded) {
    // a chain without our faucet: coinbase rewards, mature after 100 blocks
    await backend.mine(1, wallet.identityAddress)
    await backend.mine(1, await wallet.newAddress())
    await backend.mine(100, burnAddress(backend))
  }
  // age the identity's coins past the default policy's min-age
  await backend.mine(6, burnAddress(backend))
}

/** An address nobody keeps the key of: block rewards that must not land in the wallet (immature coins) */
function burnAddress (backend: ChainBackend): string {
  const address = p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), backend.network).address
  if (address == null) { throw new InvalidParametersError('cannot encode a burn address') }
  return address
}
