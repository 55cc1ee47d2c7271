import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface PriceAnnouncement {
  peer: Uint8Array<ArrayBuffer>
  service: string
  version: string
  method: string
  units: string[]
  currency: string
  base: bigint
  rate: bigint
  per: bigint
  capacity: bigint
  issued: bigint
  validUntil: bigint
  seq: bigint
  addrs: Uint8Array<ArrayBuffer>[]
  withdrawn: boolean
}

export namespace PriceAnnouncement {
  let _codec: Codec<PriceAnnouncement>

  export const codec = (): Codec<PriceAnnouncement> => {
    if (_codec == null) {
      _codec = message<PriceAnnouncement>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peer != null && obj.peer.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.peer)
        }

        if ((obj.service != null && obj.service !== '')) {
          w.uint32(18)
          w.string(obj.service)
        }

        if ((obj.version != null && obj.version !== '')) {
          w.uint32(26)
          w.string(obj.version)
        }

        if ((obj.method != null && obj.method !== '')) {
          w.uint32(34)
          w.string(obj.method)
        }

        if (obj.units != null && obj.units.length > 0) {
          for (const value of obj.units) {
            w.uint32(42)
            w.string(value)
          }
        }

        if ((obj.currency != null && obj.currency !== '')) {
          w.uint32(50)
          w.string(obj.currency)
        }

        if ((obj.base != null && obj.base !== 0n)) {
          w.uint32(56)
          w.uint64(obj.base)
        }

        if ((obj.rate != null && obj.rate !== 0n)) {
          w.uint32(64)
          w.uint64(obj.rate)
        }

        if ((obj.per != null && obj.per !== 0n)) {
          w.uint32(72)
          w.uint64(obj.per)
        }

        if ((obj.capacity != null && obj.capacity !== 0n)) {
          w.uint32(80)
          w.uint64(obj.capacity)
        }

        if ((obj.issued != null && obj.issued !== 0n)) {
          w.uint32(88)
          w.uint64(obj.issued)
        }

        if ((obj.validUntil != null && obj.validUntil !== 0n)) {
          w.uint32(96)
          w.uint64(obj.validUntil)
        }

        if ((obj.seq != null && obj.seq !== 0n)) {
          w.uint32(104)
          w.uint64(obj.seq)
        }

        if (obj.addrs != null && obj.addrs.length > 0) {
          for (const value of obj.addrs) {
            w.uint32(114)
            w.bytes(value)
          }
        }

        if ((obj.withdrawn != null && obj.withdrawn !== false)) {
          w.uint32(120)
          w.bool(obj.withdrawn)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peer: uint8ArrayAlloc(0),
          service: '',
          version: '',
          method: '',
          units: [],
          currency: '',
          base: 0n,
          rate: 0n,
          per: 0n,
          capacity: 0n,
          issued: 0n,
          validUntil: 0n,
          seq: 0n,
          addrs: [],
          withdrawn: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peer = reader.bytes()
              break
            }
            case 2: {
              obj.service = reader.string()
              break
            }
            case 3: {
              obj.version = reader.string()
              break
            }
            case 4: {
              obj.method = reader.string()
              break
            }
            case 5: {
              if (opts.limits?.units != null && obj.units.length === opts.limits.units) {
                throw new MaxLengthError('Decode error - repeated field "units" had too many elements')
              }

              obj.units.push(reader.string())
              break
            }
            case 6: {
              obj.currency = reader.string()
              break
            }
            case 7: {
              obj.base = reader.uint64()
              break
            }
            case 8: {
              obj.rate = reader.uint64()
              break
            }
            case 9: {
              obj.per = reader.uint64()
              break
            }
            case 10: {
              obj.capacity = reader.uint64()
              break
            }
            case 11: {
              obj.issued = reader.uint64()
              break
            }
            case 12: {
              obj.validUntil = reader.uint64()
              break
            }
            case 13: {
              obj.seq = reader.uint64()
              break
            }
            case 14: {
              if (opts.limits?.addrs != null && obj.addrs.length === opts.limits.addrs) {
                throw new MaxLengthError('Decode error - repeated field "addrs" had too many elements')
              }

              obj.addrs.push(reader.bytes())
              break
            }
            case 15: {
              obj.withdrawn = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          units: 0,
          addrs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peer`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.service`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.version`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.method`,
                value: reader.string()
              }
              break
            }
            case 5: {
              if (opts.limits?.units != null && obj.units === opts.limits.units) {
                throw new MaxLengthError('Streaming decode error - repeated field "units" had too many elements')
              }

              yield {
                field: `${prefix}.units[]`,
                index: obj.units,
                value: reader.string()
              }

              obj.units++

              break
            }
            case 6: {
              yield {
                field: `${prefix}.currency`,
                value: reader.string()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.base`,
                value: reader.uint64()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.rate`,
                value: reader.uint64()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.per`,
                value: reader.uint64()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.capacity`,
                value: reader.uint64()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.issued`,
                value: reader.uint64()
              }
              break
            }
            case 12: {
              yield {
                field: `${prefix}.validUntil`,
                value: reader.uint64()
              }
              break
            }
            case 13: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 14: {
              if (opts.limits?.addrs != null && obj.addrs === opts.limits.addrs) {
                throw new MaxLengthError('Streaming decode error - repeated field "addrs" had too many elements')
              }

              yield {
                field: `${prefix}.addrs[]`,
                index: obj.addrs,
                value: reader.bytes()
              }

              obj.addrs++

              break
            }
            case 15: {
              yield {
                field: `${prefix}.withdrawn`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface PriceAnnouncementPeerFieldEvent {
    field: '$.peer'
    value: Uint8Array<ArrayBuffer>
  }

  export interface PriceAnnouncementServiceFieldEvent {
    field: '$.service'
    value: string
  }

  export interface PriceAnnouncementVersionFieldEvent {
    field: '$.version'
    value: string
  }

  export interface PriceAnnouncementMethodFieldEvent {
    field: '$.method'
    value: string
  }

  export interface PriceAnnouncementUnitsFieldEvent {
    field: '$.units[]'
    index: number
    value: string
  }

  export interface PriceAnnouncementCurrencyFieldEvent {
    field: '$.currency'
    value: string
  }

  export interface PriceAnnouncementBaseFieldEvent {
    field: '$.base'
    value: bigint
  }

  export interface PriceAnnouncementRateFieldEvent {
    field: '$.rate'
    value: bigint
  }

  export interface PriceAnnouncementPerFieldEvent {
    field: '$.per'
    value: bigint
  }

  export interface PriceAnnouncementCapacityFieldEvent {
    field: '$.capacity'
    value: bigint
  }

  export interface PriceAnnouncementIssuedFieldEvent {
    field: '$.issued'
    value: bigint
  }

  export interface PriceAnnouncementValidUntilFieldEvent {
    field: '$.validUntil'
    value: bigint
  }

  export interface PriceAnnouncementSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface PriceAnnouncementAddrsFieldEvent {
    field: '$.addrs[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface PriceAnnouncementWithdrawnFieldEvent {
    field: '$.withdrawn'
    value: boolean
  }

  export function encode (obj: Partial<PriceAnnouncement>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, PriceAnnouncement.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PriceAnnouncement>): PriceAnnouncement {
    return decodeMessage(buf, PriceAnnouncement.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PriceAnnouncement>): Generator<PriceAnnouncementPeerFieldEvent | PriceAnnouncementServiceFieldEvent | PriceAnnouncementVersionFieldEvent | PriceAnnouncementMethodFieldEvent | PriceAnnouncementUnitsFieldEvent | PriceAnnouncementCurrencyFieldEvent | PriceAnnouncementBaseFieldEvent | PriceAnnouncementRateFieldEvent | PriceAnnouncementPerFieldEvent | PriceAnnouncementCapacityFieldEvent | PriceAnnouncementIssuedFieldEvent | PriceAnnouncementValidUntilFieldEvent | PriceAnnouncementSeqFieldEvent | PriceAnnouncementAddrsFieldEvent | PriceAnnouncementWithdrawnFieldEvent> {
    return streamMessage(buf, PriceAnnouncement.codec(), opts)
  }
}

export interface SignedPriceAnnouncement {
  announcement: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedPriceAnnouncement {
  let _codec: Codec<SignedPriceAnnouncement>

  export const codec = (): Codec<SignedPriceAnnouncement> => {
    if (_codec == null) {
      _codec = message<SignedPriceAnnouncement>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.announcement != null && obj.announcement.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.announcement)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          announcement: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.announcement = reader.bytes()
              break
            }
            case 2: {
              obj.signature = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.announcement`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.signature`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface SignedPriceAnnouncementAnnouncementFieldEvent {
    field: '$.announcement'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedPriceAnnouncementSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedPriceAnnouncement>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedPriceAnnouncement.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedPriceAnnouncement>): SignedPriceAnnouncement {
    return decodeMessage(buf, SignedPriceAnnouncement.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedPriceAnnouncement>): Generator<SignedPriceAnnouncementAnnouncementFieldEvent | SignedPriceAnnouncementSignatureFieldEvent> {
    return streamMessage(buf, SignedPriceAnnouncement.codec(), opts)
  }
}

export interface BookEntry {
  signed?: SignedPriceAnnouncement
  received: bigint
  source: string
}

export namespace BookEntry {
  let _codec: Codec<BookEntry>

  export const codec = (): Codec<BookEntry> => {
    if (_codec == null) {
      _codec = message<BookEntry>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.signed != null) {
          w.uint32(10)
          SignedPriceAnnouncement.codec().encode(obj.signed, w)
        }

        if ((obj.received != null && obj.received !== 0n)) {
          w.uint32(16)
          w.uint64(obj.received)
        }

        if ((obj.source != null && obj.source !== '')) {
          w.uint32(26)
          w.string(obj.source)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          received: 0n,
          source: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.signed = SignedPriceAnnouncement.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.signed
              })
              break
            }
            case 2: {
              obj.received = reader.uint64()
              break
            }
            case 3: {
              obj.source = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield * SignedPriceAnnouncement.codec().stream(reader, reader.uint32(), `${prefix}.signed`, {
                limits: opts.limits?.signed
              })

              break
            }
            case 2: {
              yield {
                field: `${prefix}.received`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.source`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface BookEntrySignedAnnouncementFieldEvent {
    field: '$.signed.announcement'
    value: Uint8Array<ArrayBuffer>
  }

  export interface BookEntrySignedSignatureFieldEvent {
    field: '$.signed.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export interface BookEntryReceivedFieldEvent {
    field: '$.received'
    value: bigint
  }

  export interface BookEntrySourceFieldEvent {
    field: '$.source'
    value: string
  }

  export function encode (obj: Partial<BookEntry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BookEntry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BookEntry>): BookEntry {
    return decodeMessage(buf, BookEntry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BookEntry>): Generator<BookEntrySignedAnnouncementFieldEvent | BookEntrySignedSignatureFieldEvent | BookEntryReceivedFieldEvent | BookEntrySourceFieldEvent> {
    return streamMessage(buf, BookEntry.codec(), opts)
  }
}
