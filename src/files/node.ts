/** The node's `files` (DecloudNode.files): its store, its wallet's seed, its way of paying sellers */
import { mnemonicToSeed } from '@scure/bip39'
import { sha256 } from '../protocols/opencloud/api/signing.js'
import { Files, FilesAgent, OpenCloudPieces } from './index.js'
import type { AgentFact } from './agent.js'
import type { AgentOptions, CatalogRouting, FilesInit, PieceCaller } from './index.js'
import type { RankSellersOptions, SellerCandidate } from '../market/select.js'
import type { PaidCallResult, PayOption } from '../payments/buyer/bidding.js'
import type { CallRequest, CallResult, CallTarget } from '../protocols/opencloud/net/client.js'
import type { SubDb } from '../store/index.js'
import type { PrivateKey } from '@libp2p/interface'

/** What files need of a node (a DecloudNode has it all; named here, not imported: the node imports this file) */
export interface FilesNode {
  readonly store: { sub(name: string): SubDb }
  readonly libp2p: { readonly contentRouting: CatalogRouting }
  readonly opencloud: { call(target: CallTarget, call: CallRequest, options: { signal?: AbortSignal }): Promise<CallResult> }
  readonly payments?: { readonly wallet: { exportMnemonic(): string } }
  readonly reputation?: { record(fact: AgentFact): Promise<unknown> }
  rankSellers(service: string, options: RankSellersOptions): Promise<SellerCandidate[]>
  pay(target: CallTarget, call: CallRequest, options: { pay: PayOption, max: bigint, signal?: AbortSignal }): Promise<PaidCallResult>
}

/**
 * Files of a node. Keys come from the wallet's seed words when payments are
 * on (a restored seed restores access); a node without a wallet keys its
 * files from its own libp2p key instead (back up the data dir's key then).
 * Calls are paid through the wallet (`auto`, at most the piece's max price),
 * or plain when payments are off.
 */
export function filesForNode (node: FilesNode, nodeKey: PrivateKey, options: Partial<Omit<FilesInit, 'db' | 'seed' | 'pieces' | 'findSellers'>> = {}, agent: AgentOptions | false = {}): Files {
  const caller: PieceCaller = async (target, call, o) => {
    if (node.payments != null) {
      return node.pay(target, call, { pay: { kind: 'auto' }, max: o.max, signal: o.signal })
    }
    return node.opencloud.call(target, call, { signal: o.signal })
  }
  const pieces = new OpenCloudPieces(caller)
  const findSellers: FilesInit['findSellers'] = async (o) => node.rankSellers('storage', { method: 'put', usage: o.usage, timeout: o.timeout, signal: o.signal })
  const files = new Files({
    ...options,
    db: node.store.sub('files'),
    seed: async () => {
      const wallet = node.payments?.wallet
      if (wallet != null) { return mnemonicToSeed(wallet.exportMnemonic()) }
      return sha256(Buffer.concat([Buffer.from('decloud files: node key\n'), nodeKey.raw]))
    },
    pieces,
    routing: node.libp2p.contentRouting,
    findSellers
  })
  if (agent !== false) {
    files.agent = new FilesAgent({
      ...agent,
      db: node.store.sub('files'),
      pieces,
      records: files.records,
      findSellers,
      trust: options.trust,
      record: node.reputation != null ? async (fact) => node.reputation?.record(fact) : undefined
    })
  }
  return files
}
