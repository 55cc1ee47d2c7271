/**
 * The core `market` service: `market.prices` shares this node's price book
 * (the signed announcements it has verified) with nodes that just joined,
 * and a joining node reads the answer with `signedEntries`.
 */
import { InvalidMessageError } from '@libp2p/interface'
import { ServiceError } from '../protocols/opencloud/api/template.js'
import { Status } from '../protocols/opencloud/pb/opencloud.js'
import { MARKET_TOPIC } from './announcement.js'
import { entryJson, summaryJson } from './json.js'
import type { PriceEntryJson } from './json.js'
import type { PriceBook } from './price-book.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'

/** Most entries one `market.prices` answer carries (and a sync accepts) */
export const MAX_SYNC_ENTRIES = 2_000
/** Byte budget of the entries in one `market.prices` answer */
export const MAX_PRICES_BYTES = 1024 * 1024
/** Longest signed entry (base64) a sync accepts */
const MAX_SIGNED_ENTRY = 4096

/** The core `market` service over `book` */
export function marketService (book: PriceBook): ServiceDefinition {
  return {
    name: 'market',
    version: '1.0.0',
    description: 'this node\'s knowledge of market prices (signed announcements it has verified)',
    describe: () => ({ topic: MARKET_TOPIC, entries: book.size }),
    methods: {
      prices: {
        description: 'the price book as JSON: a summary per service/method and the signed entries',
        args: '[service] [method]',
        handler: (call) => {
          const [service, method] = call.args
          if (call.args.length > 2) { throw new ServiceError(Status.BAD_REQUEST, 'usage: prices [service] [method]') }
          const filter = { service: service === '' ? undefined : service, method: method === '' ? undefined : method }
          const summary = book.summary(filter).map(summaryJson)
          // newest first, within a count and a byte budget (the answer must fit any body limit)
          const entries: PriceEntryJson[] = []
          let bytes = 0
          for (const e of book.entries(filter).sort((a, b) => b.issued - a.issued)) {
            const j = entryJson(e)
            bytes += JSON.stringify(j).length + 1
            if (entries.length >= MAX_SYNC_ENTRIES || bytes > MAX_PRICES_BYTES) { break }
            entries.push(j)
          }
          return { body: new TextEncoder().encode(JSON.stringify({ generated: Date.now(), summary, entries })) }
        }
      }
    }
  }
}

/**
 * The signed announcements of a `market.prices` answer, not yet verified
 * (at most MAX_SYNC_ENTRIES), one at a time. Throws when the answer is not one.
 */
export function * signedEntries (body: Uint8Array): Generator<Uint8Array> {
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder().decode(body))
  } catch {
    throw new InvalidMessageError('market.prices answer is not JSON')
  }
  const entries = (parsed as { entries?: unknown }).entries
  if (!Array.isArray(entries)) { throw new InvalidMessageError('market.prices answer has no entries') }
  for (const e of entries.slice(0, MAX_SYNC_ENTRIES)) {
    const signed = (e as { signed?: unknown })?.signed
    if (typeof signed !== 'string' || signed.length > MAX_SIGNED_ENTRY) { continue }
    yield Buffer.from(signed, 'base64')
  }
}
