import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface StorageReceipt {
  seller: Uint8Array<ArrayBuffer>
  piece: Uint8Array<ArrayBuffer>
  size: bigint
  root: Uint8Array<ArrayBuffer>
  owner: string
  expires: bigint
  paid: bigint
  promised: bigint
  request: Uint8Array<ArrayBuffer>
  issued: bigint
  method: string
}

export namespace StorageReceipt {
  let _codec: Codec<StorageReceipt>

  export const codec = (): Codec<StorageReceipt> => {
    if (_codec == null) {
      _codec = message<StorageReceipt>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.seller != null && obj.seller.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.seller)
        }

        if ((obj.piece != null && obj.piece.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.piece)
        }

        if ((obj.size != null && obj.size !== 0n)) {
          w.uint32(24)
          w.uint64(obj.size)
        }

        if ((obj.root != null && obj.root.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.root)
        }

        if ((obj.owner != null && obj.owner !== '')) {
          w.uint32(42)
          w.string(obj.owner)
        }

        if ((obj.expires != null && obj.expires !== 0n)) {
          w.uint32(48)
          w.uint64(obj.expires)
        }

        if ((obj.paid != null && obj.paid !== 0n)) {
          w.uint32(56)
          w.uint64(obj.paid)
        }

        if ((obj.promised != null && obj.promised !== 0n)) {
          w.uint32(64)
          w.uint64(obj.promised)
        }

        if ((obj.request != null && obj.request.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.request)
        }

        if ((obj.issued != null && obj.issued !== 0n)) {
          w.uint32(80)
          w.uint64(obj.issued)
        }

        if ((obj.method != null && obj.method !== '')) {
          w.uint32(90)
          w.string(obj.method)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          seller: uint8ArrayAlloc(0),
          piece: uint8ArrayAlloc(0),
          size: 0n,
          root: uint8ArrayAlloc(0),
          owner: '',
          expires: 0n,
          paid: 0n,
          promised: 0n,
          request: uint8ArrayAlloc(0),
          issued: 0n,
          method: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.seller = reader.bytes()
              break
            }
            case 2: {
              obj.piece = reader.bytes()
              break
            }
            case 3: {
              obj.size = reader.uint64()
              break
            }
            case 4: {
              obj.root = reader.bytes()
              break
            }
            case 5: {
              obj.owner = reader.string()
              break
            }
            case 6: {
              obj.expires = reader.uint64()
              break
            }
            case 7: {
              obj.paid = reader.uint64()
              break
            }
            case 8: {
              obj.promised = reader.uint64()
              break
            }
            case 9: {
              obj.request = reader.bytes()
              break
            }
            case 10: {
              obj.issued = reader.uint64()
              break
            }
            case 11: {
              obj.method = reader.string()
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
                field: `${prefix}.seller`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.piece`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.root`,
                value: reader.bytes()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.owner`,
                value: reader.string()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.expires`,
                value: reader.uint64()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.paid`,
                value: reader.uint64()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.promised`,
                value: reader.uint64()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.request`,
                value: reader.bytes()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.issued`,
                value: reader.uint64()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.method`,
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

  export interface StorageReceiptSellerFieldEvent {
    field: '$.seller'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StorageReceiptPieceFieldEvent {
    field: '$.piece'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StorageReceiptSizeFieldEvent {
    field: '$.size'
    value: bigint
  }

  export interface StorageReceiptRootFieldEvent {
    field: '$.root'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StorageReceiptOwnerFieldEvent {
    field: '$.owner'
    value: string
  }

  export interface StorageReceiptExpiresFieldEvent {
    field: '$.expires'
    value: bigint
  }

  export interface StorageReceiptPaidFieldEvent {
    field: '$.paid'
    value: bigint
  }

  export interface StorageReceiptPromisedFieldEvent {
    field: '$.promised'
    value: bigint
  }

  export interface StorageReceiptRequestFieldEvent {
    field: '$.request'
    value: Uint8Array<ArrayBuffer>
  }

  export interface StorageReceiptIssuedFieldEvent {
    field: '$.issued'
    value: bigint
  }

  export interface StorageReceiptMethodFieldEvent {
    field: '$.method'
    value: string
  }

  export function encode (obj: Partial<StorageReceipt>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StorageReceipt.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StorageReceipt>): StorageReceipt {
    return decodeMessage(buf, StorageReceipt.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StorageReceipt>): Generator<StorageReceiptSellerFieldEvent | StorageReceiptPieceFieldEvent | StorageReceiptSizeFieldEvent | StorageReceiptRootFieldEvent | StorageReceiptOwnerFieldEvent | StorageReceiptExpiresFieldEvent | StorageReceiptPaidFieldEvent | StorageReceiptPromisedFieldEvent | StorageReceiptRequestFieldEvent | StorageReceiptIssuedFieldEvent | StorageReceiptMethodFieldEvent> {
    return streamMessage(buf, StorageReceipt.codec(), opts)
  }
}

export interface SignedStorageReceipt {
  receipt: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedStorageReceipt {
  let _codec: Codec<SignedStorageReceipt>

  export const codec = (): Codec<SignedStorageReceipt> => {
    if (_codec == null) {
      _codec = message<SignedStorageReceipt>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.receipt != null && obj.receipt.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.receipt)
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
          receipt: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.receipt = reader.bytes()
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
                field: `${prefix}.receipt`,
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

  export interface SignedStorageReceiptReceiptFieldEvent {
    field: '$.receipt'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedStorageReceiptSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedStorageReceipt>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedStorageReceipt.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedStorageReceipt>): SignedStorageReceipt {
    return decodeMessage(buf, SignedStorageReceipt.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedStorageReceipt>): Generator<SignedStorageReceiptReceiptFieldEvent | SignedStorageReceiptSignatureFieldEvent> {
    return streamMessage(buf, SignedStorageReceipt.codec(), opts)
  }
}

export interface AuditLeaf {
  index: number
  data: Uint8Array<ArrayBuffer>
  path: Uint8Array<ArrayBuffer>[]
}

export namespace AuditLeaf {
  let _codec: Codec<AuditLeaf>

  export const codec = (): Codec<AuditLeaf> => {
    if (_codec == null) {
      _codec = message<AuditLeaf>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.data)
        }

        if (obj.path != null && obj.path.length > 0) {
          for (const value of obj.path) {
            w.uint32(26)
            w.bytes(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          data: uint8ArrayAlloc(0),
          path: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.data = reader.bytes()
              break
            }
            case 3: {
              if (opts.limits?.path != null && obj.path.length === opts.limits.path) {
                throw new MaxLengthError('Decode error - repeated field "path" had too many elements')
              }

              obj.path.push(reader.bytes())
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
          path: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.data`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              if (opts.limits?.path != null && obj.path === opts.limits.path) {
                throw new MaxLengthError('Streaming decode error - repeated field "path" had too many elements')
              }

              yield {
                field: `${prefix}.path[]`,
                index: obj.path,
                value: reader.bytes()
              }

              obj.path++

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

  export interface AuditLeafIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface AuditLeafDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AuditLeafPathFieldEvent {
    field: '$.path[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<AuditLeaf>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, AuditLeaf.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AuditLeaf>): AuditLeaf {
    return decodeMessage(buf, AuditLeaf.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AuditLeaf>): Generator<AuditLeafIndexFieldEvent | AuditLeafDataFieldEvent | AuditLeafPathFieldEvent> {
    return streamMessage(buf, AuditLeaf.codec(), opts)
  }
}

export interface AuditProof {
  size: bigint
  leaves: AuditLeaf[]
}

export namespace AuditProof {
  let _codec: Codec<AuditProof>

  export const codec = (): Codec<AuditProof> => {
    if (_codec == null) {
      _codec = message<AuditProof>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.size != null && obj.size !== 0n)) {
          w.uint32(8)
          w.uint64(obj.size)
        }

        if (obj.leaves != null && obj.leaves.length > 0) {
          for (const value of obj.leaves) {
            w.uint32(18)
            AuditLeaf.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          size: 0n,
          leaves: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.size = reader.uint64()
              break
            }
            case 2: {
              if (opts.limits?.leaves != null && obj.leaves.length === opts.limits.leaves) {
                throw new MaxLengthError('Decode error - repeated field "leaves" had too many elements')
              }

              obj.leaves.push(AuditLeaf.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.leaves$
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
          leaves: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint64()
              }
              break
            }
            case 2: {
              if (opts.limits?.leaves != null && obj.leaves === opts.limits.leaves) {
                throw new MaxLengthError('Streaming decode error - repeated field "leaves" had too many elements')
              }

              for (const evt of AuditLeaf.codec().stream(reader, reader.uint32(), `${prefix}.leaves[]`, {
                limits: opts.limits?.leaves$
              })) {
                yield {
                  ...evt,
                  index: obj.leaves
                }
              }

              obj.leaves++

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

  export interface AuditProofSizeFieldEvent {
    field: '$.size'
    value: bigint
  }

  export interface AuditProofLeavesIndexFieldEvent {
    field: '$.leaves[].index'
    value: number
    index: number
  }

  export interface AuditProofLeavesDataFieldEvent {
    field: '$.leaves[].data'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface AuditProofLeavesPathFieldEvent {
    field: '$.leaves[].path[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<AuditProof>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, AuditProof.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AuditProof>): AuditProof {
    return decodeMessage(buf, AuditProof.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AuditProof>): Generator<AuditProofSizeFieldEvent | AuditProofLeavesIndexFieldEvent | AuditProofLeavesDataFieldEvent | AuditProofLeavesPathFieldEvent> {
    return streamMessage(buf, AuditProof.codec(), opts)
  }
}
