import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface ReportEntry {
  peer: Uint8Array<ArrayBuffer>
  trust: number
  facts: number
  bad: number
}

export namespace ReportEntry {
  let _codec: Codec<ReportEntry>

  export const codec = (): Codec<ReportEntry> => {
    if (_codec == null) {
      _codec = message<ReportEntry>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peer != null && obj.peer.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.peer)
        }

        if ((obj.trust != null && obj.trust !== 0)) {
          w.uint32(16)
          w.uint32(obj.trust)
        }

        if ((obj.facts != null && obj.facts !== 0)) {
          w.uint32(24)
          w.uint32(obj.facts)
        }

        if ((obj.bad != null && obj.bad !== 0)) {
          w.uint32(32)
          w.uint32(obj.bad)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peer: uint8ArrayAlloc(0),
          trust: 0,
          facts: 0,
          bad: 0
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
              obj.trust = reader.uint32()
              break
            }
            case 3: {
              obj.facts = reader.uint32()
              break
            }
            case 4: {
              obj.bad = reader.uint32()
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
                field: `${prefix}.peer`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.trust`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.facts`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.bad`,
                value: reader.uint32()
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

  export interface ReportEntryPeerFieldEvent {
    field: '$.peer'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReportEntryTrustFieldEvent {
    field: '$.trust'
    value: number
  }

  export interface ReportEntryFactsFieldEvent {
    field: '$.facts'
    value: number
  }

  export interface ReportEntryBadFieldEvent {
    field: '$.bad'
    value: number
  }

  export function encode (obj: Partial<ReportEntry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ReportEntry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReportEntry>): ReportEntry {
    return decodeMessage(buf, ReportEntry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReportEntry>): Generator<ReportEntryPeerFieldEvent | ReportEntryTrustFieldEvent | ReportEntryFactsFieldEvent | ReportEntryBadFieldEvent> {
    return streamMessage(buf, ReportEntry.codec(), opts)
  }
}

export interface ReputationReport {
  reporter: Uint8Array<ArrayBuffer>
  issued: bigint
  seq: bigint
  entries: ReportEntry[]
}

export namespace ReputationReport {
  let _codec: Codec<ReputationReport>

  export const codec = (): Codec<ReputationReport> => {
    if (_codec == null) {
      _codec = message<ReputationReport>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.reporter != null && obj.reporter.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.reporter)
        }

        if ((obj.issued != null && obj.issued !== 0n)) {
          w.uint32(16)
          w.uint64(obj.issued)
        }

        if ((obj.seq != null && obj.seq !== 0n)) {
          w.uint32(24)
          w.uint64(obj.seq)
        }

        if (obj.entries != null && obj.entries.length > 0) {
          for (const value of obj.entries) {
            w.uint32(34)
            ReportEntry.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          reporter: uint8ArrayAlloc(0),
          issued: 0n,
          seq: 0n,
          entries: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.reporter = reader.bytes()
              break
            }
            case 2: {
              obj.issued = reader.uint64()
              break
            }
            case 3: {
              obj.seq = reader.uint64()
              break
            }
            case 4: {
              if (opts.limits?.entries != null && obj.entries.length === opts.limits.entries) {
                throw new MaxLengthError('Decode error - repeated field "entries" had too many elements')
              }

              obj.entries.push(ReportEntry.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.entries$
              }))
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
          entries: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.reporter`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.issued`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              if (opts.limits?.entries != null && obj.entries === opts.limits.entries) {
                throw new MaxLengthError('Streaming decode error - repeated field "entries" had too many elements')
              }

              for (const evt of ReportEntry.codec().stream(reader, reader.uint32(), `${prefix}.entries[]`, {
                limits: opts.limits?.entries$
              })) {
                yield {
                  ...evt,
                  index: obj.entries
                }
              }

              obj.entries++

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

  export interface ReputationReportReporterFieldEvent {
    field: '$.reporter'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReputationReportIssuedFieldEvent {
    field: '$.issued'
    value: bigint
  }

  export interface ReputationReportSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface ReputationReportEntriesPeerFieldEvent {
    field: '$.entries[].peer'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface ReputationReportEntriesTrustFieldEvent {
    field: '$.entries[].trust'
    value: number
    index: number
  }

  export interface ReputationReportEntriesFactsFieldEvent {
    field: '$.entries[].facts'
    value: number
    index: number
  }

  export interface ReputationReportEntriesBadFieldEvent {
    field: '$.entries[].bad'
    value: number
    index: number
  }

  export function encode (obj: Partial<ReputationReport>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ReputationReport.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReputationReport>): ReputationReport {
    return decodeMessage(buf, ReputationReport.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReputationReport>): Generator<ReputationReportReporterFieldEvent | ReputationReportIssuedFieldEvent | ReputationReportSeqFieldEvent | ReputationReportEntriesPeerFieldEvent | ReputationReportEntriesTrustFieldEvent | ReputationReportEntriesFactsFieldEvent | ReputationReportEntriesBadFieldEvent> {
    return streamMessage(buf, ReputationReport.codec(), opts)
  }
}

export interface SignedReputationReport {
  report: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedReputationReport {
  let _codec: Codec<SignedReputationReport>

  export const codec = (): Codec<SignedReputationReport> => {
    if (_codec == null) {
      _codec = message<SignedReputationReport>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.report != null && obj.report.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.report)
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
          report: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.report = reader.bytes()
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
                field: `${prefix}.report`,
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

  export interface SignedReputationReportReportFieldEvent {
    field: '$.report'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedReputationReportSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedReputationReport>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedReputationReport.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedReputationReport>): SignedReputationReport {
    return decodeMessage(buf, SignedReputationReport.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedReputationReport>): Generator<SignedReputationReportReportFieldEvent | SignedReputationReportSignatureFieldEvent> {
    return streamMessage(buf, SignedReputationReport.codec(), opts)
  }
}
