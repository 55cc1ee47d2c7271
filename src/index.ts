/**
 * decloud: an open market for cloud services, paid in bitcoin.
 *
 * - `createDecloudNode()` starts a complete node (data dir, LevelDB, libp2p, OpenCloud).
 * - `openCloud()` is the OpenCloud protocol as a libp2p service, for embedding.
 * - `decloud/opencloud` (./opencloud.ts) is the light entry point for apps that
 * need only that: it loads no bitcoin, chain, LevelDB, mDNS or YAML code.
 * - The embedded regtest chain needs the optional dependency bcoin, loaded on
 * first use: without it everything else works.
 *
 * Importing decloud installs a `Promise.withResolvers` polyfill where the
 * runtime lacks one (Node 20): the libp2p 3 stack needs it.
 *
 * @packageDocumentation
 */
import './polyfill.js'

export * from './protocols/opencloud/index.js'
export { createDecloudNode, decloudDefaults, defaultDataDir, DEFAULT_PORT } from './node/index.js'
export type { DecloudNode, DecloudNodeOptions, DecloudServices } from './node/index.js'
export { sha256Service } from './services/sha256.js'
export type { Sha256ServiceInit } from './services/sha256.js'
export { StorageService, storageService, DEFAULT_CAPACITY, DEFAULT_MAX_BLOB_SIZE, parseBlobId, ownerOf } from './services/storage/index.js'
export type { StorageServiceInit, BlobMeta, StorageCount } from './services/storage/index.js'
export { DEFAULT_LEASE, DEFAULT_MAX_LEASE, DEFAULT_LEASE_GRACE } from './services/storage/index.js'
export { verifyReceipt, verifyAudit, newChallenge, auditArgs, pieceRoot, parsePutAnswer, openReceipt, merkleRoot, verifyProof, challengedLeaves, detectionProbability, InvalidReceiptError, AuditFailedError, InvalidProofError, DEFAULT_AUDIT_LEAVES, MAX_AUDIT_LEAVES, LEAF_SIZE } from './services/storage/client.js'
export type { Receipt, LeaseAnswer, ReceiptExpectation } from './services/storage/client.js'
export { perGiBMonth, pricePerGiBMonth, BYTE_SECONDS_PER_GIB_MONTH, SECONDS_PER_MONTH } from './protocols/opencloud/api/units.js'
export { ServiceError, validateService, reprice, TEMPLATE_METHODS, MAX_UNIT_DIMENSIONS, QUOTE_VALIDITY } from './protocols/opencloud/api/template.js'
export type { ServiceDefinition, MethodDefinition, ServiceCall, MethodResult } from './protocols/opencloud/api/template.js'
export { computeCost, isFree, validatePricing, parseUnsigned, MAX_AMOUNT, AmountOverflowError, InvalidPricingError } from './protocols/opencloud/api/pricing.js'
export type { Pricing, CostBreakdown } from './protocols/opencloud/api/pricing.js'
export { Store } from './store/index.js'
export { Discovery, PeerDirectory, serviceKey, serviceKeyText, peersService, listPeers } from './dht/index.js'
export type { Seller, FindSellersOptions, AdvertisedService, PeerListing } from './dht/index.js'
export { Market, PriceBook, MARKET_TOPIC, signAnnouncement, verifyAnnouncement, followMarketPrice, validateStrategy, rankSellers, rankingMethod, callCheapest, NoSellerReachedError, priceOf, REFERENCE_UNITS } from './market/index.js'
export type { PricingStrategy, PriceEntry, RankedEntry, MethodSummary, SellerCandidate, RankSellersOptions, Announcement } from './market/index.js'
export { DHT_PROTOCOL, CORE_SERVICES, defaultNetworkMode } from './node/index.js'
export type { NetworkMode } from './node/index.js'
// the node's parts as libp2p service factories (composed by decloudDefaults)
export { discovery } from './dht/index.js'
export { market } from './market/index.js'
export { swarmKeeper, SwarmKeeper } from './node/swarm.js'
export { payments, PaymentsService } from './node/services.js'
export type { DecloudDefaultsOptions, DhtOptions, MarketOptions, SwarmOptions } from './node/index.js'
export { sellersJson, marketJson } from './node/reports.js'
export { withSwarmClient } from './node/transient.js'
export { callAsStranger } from './node/stranger.js'
export type { NodePayments, PaymentsOptions, PolicyOptions } from './node/payments.js'
export * from './payments/types.js'
export { MAINNET, TESTNET, CORE_REGTEST, BCOIN_REGTEST, networkOf } from './payments/chain/networks.js'
export { createChainBackend, EmbeddedChain, EmbeddedChainUnavailableError, BitcoindRpcBackend, EsploraBackend, ChainConfigError } from './payments/chain/index.js'
export type { ChainBackendOptions, EmbeddedChainOptions, BitcoindRpcOptions, EsploraOptions } from './payments/chain/index.js'
export { Wallet } from './payments/wallet/wallet.js'
export { BTC_PREFIX, btcSigner, btcVerifier, AddressBindings, bitcoinCredentialStage } from './payments/credentials.js'
export { loadOrCreateMnemonic, restoreMnemonic, WrongPassphraseError, PassphraseRequiredError, WalletFileError, InvalidMnemonicError } from './payments/wallet/mnemonic.js'
export { PaymentGate, paymentGate } from './payments/seller/gate.js'
export { TabStore, parseThreshold } from './payments/seller/tabs.js'
export { paymentsService } from './payments/seller/service.js'
export { payAndCall, PaymentRefusedError } from './payments/buyer/bidding.js'
export type { PayOption, PaidCallResult } from './payments/buyer/bidding.js'
export { PromiseBook } from './payments/buyer/promises.js'
export { FulfilmentLoop } from './payments/buyer/fulfilment.js'
export { parsePayOption } from './payments/buyer/pay-option.js'
export * from './policy/index.js'
