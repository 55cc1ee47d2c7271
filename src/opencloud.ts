/**
 * `decloud/opencloud`: the light entry point for apps that embed decloud in
 * their own libp2p node.
 *
 * It has `openCloud()` (the OpenCloud protocol as a libp2p service), the
 * service template, pricing, statuses, signing and the client, and loads
 * no bitcoin, chain, LevelDB, mDNS or YAML code (test/packaging.spec.ts
 * checks this). Payments, discovery, the market and the complete node are in
 * the full entry point, `decloud`.
 *
 * Importing it installs a `Promise.withResolvers` polyfill where the runtime
 * lacks one (Node 20): the libp2p 3 stack needs it.
 *
 * @example
 * ```ts
 * import { createLibp2p } from 'libp2p'
 * import { openCloud, sha256Service } from 'decloud/opencloud'
 *
 * const node = await createLibp2p({
 *   // transports, encrypters, muxers…
 *   services: { opencloud: openCloud({ services: [sha256Service()] }) }
 * })
 * ```
 *
 * @packageDocumentation
 */
import './polyfill.js'

export * from './protocols/opencloud/index.js'
export { sha256Service } from './services/sha256.js'
export type { Sha256ServiceInit } from './services/sha256.js'
export { ServiceError, validateService, reprice, TEMPLATE_METHODS, MAX_UNIT_DIMENSIONS, QUOTE_VALIDITY } from './protocols/opencloud/api/template.js'
export type { ServiceDefinition, MethodDefinition, ServiceCall, MethodResult } from './protocols/opencloud/api/template.js'
export { computeCost, isFree, validatePricing, parseUnsigned, MAX_AMOUNT, AmountOverflowError, InvalidPricingError } from './protocols/opencloud/api/pricing.js'
export type { Pricing, CostBreakdown } from './protocols/opencloud/api/pricing.js'
