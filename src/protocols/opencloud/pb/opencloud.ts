import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export enum PaymentType {
  PAYMENT_NONE = 'PAYMENT_NONE',
  PAYMENT_ATTACHED = 'PAYMENT_ATTACHED',
  PAYMENT_DEFER = 'PAYMENT_DEFER'
}

enum __PaymentTypeValues {
  PAYMENT_NONE = 0,
  PAYMENT_ATTACHED = 1,
  PAYMENT_DEFER = 2
}

export namespace PaymentType {
  export const codec = (): Codec<PaymentType> => {
    return enumeration<PaymentType>(__PaymentTypeValues)
  }
}

export interface Payment {
  currency: string
  amount: bigint
  txn: Uint8Array<ArrayBuffer>
  deferId: string
  deferThreshold: string
}

export namespace Payment {
  let _codec: Codec<Payment>

  export const codec = (): Codec<Payment> => {
    if (_codec == null) {
      _codec = message<Payment>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.currency != null && obj.currency !== '')) {
          w.uint32(10)
          w.string(obj.currency)
        }

        if ((obj.amount != null && obj.amount !== 0n)) {
          w.uint32(16)
          w.uint64(obj.amount)
        }

        if ((obj.txn != null && obj.txn.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.txn)
        }

        if ((obj.deferId != null && obj.deferId !== '')) {
          w.uint32(34)
          w.string(obj.deferId)
        }

        if ((obj.deferThreshold != null && obj.deferThreshold !== '')) {
          w.uint32(42)
          w.string(obj.deferThreshold)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          currency: '',
          amount: 0n,
          txn: uint8ArrayAlloc(0),
          deferId: '',
          deferThreshold: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.currency = reader.string()
              break
            }
            case 2: {
              obj.amount = reader.uint64()
              break
            }
            case 3: {
              obj.txn = reader.bytes()
              break
            }
            case 4: {
              obj.deferId = reader.string()
              break
            }
            case 5: {
              obj.deferThreshold = reader.string()
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
                field: `${prefix}.currency`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.amount`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.txn`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.deferId`,
                value: reader.string()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.deferThreshold`,
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

  export interface PaymentCurrencyFieldEvent {
    field: '$.currency'
    value: string
  }

  export interface PaymentAmountFieldEvent {
    field: '$.amount'
    value: bigint
  }

  export interface PaymentTxnFieldEvent {
    field: '$.txn'
    value: Uint8Array<ArrayBuffer>
  }

  export interface PaymentDeferIdFieldEvent {
    field: '$.deferId'
    value: string
  }

  export interface PaymentDeferThresholdFieldEvent {
    field: '$.deferThreshold'
    value: string
  }

  export function encode (obj: Partial<Payment>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Payment.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Payment>): Payment {
    return decodeMessage(buf, Payment.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Payment>): Generator<PaymentCurrencyFieldEvent | PaymentAmountFieldEvent | PaymentTxnFieldEvent | PaymentDeferIdFieldEvent | PaymentDeferThresholdFieldEvent> {
    return streamMessage(buf, Payment.codec(), opts)
  }
}

export interface Request {
  id: string[]
  sig: Uint8Array<ArrayBuffer>[]
  nonce: Uint8Array<ArrayBuffer>
  service: string
  method: string
  args: string[]
  paymentType: PaymentType
  payment?: Payment
  body: Uint8Array<ArrayBuffer>
  audience: string
  signResponse: boolean
}

export namespace Request {
  let _codec: Codec<Request>

  export const codec = (): Codec<Request> => {
    if (_codec == null) {
      _codec = message<Request>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.id != null && obj.id.length > 0) {
          for (const value of obj.id) {
            w.uint32(10)
            w.string(value)
          }
        }

        if (obj.sig != null && obj.sig.length > 0) {
          for (const value of obj.sig) {
            w.uint32(18)
            w.bytes(value)
          }
        }

        if ((obj.nonce != null && obj.nonce.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.nonce)
        }

        if ((obj.service != null && obj.service !== '')) {
          w.uint32(34)
          w.string(obj.service)
        }

        if ((obj.method != null && obj.method !== '')) {
          w.uint32(42)
          w.string(obj.method)
        }

        if (obj.args != null && obj.args.length > 0) {
          for (const value of obj.args) {
            w.uint32(50)
            w.string(value)
          }
        }

        if (obj.paymentType != null && __PaymentTypeValues[obj.paymentType] !== 0) {
          w.uint32(56)
          PaymentType.codec().encode(obj.paymentType, w)
        }

        if (obj.payment != null) {
          w.uint32(66)
          Payment.codec().encode(obj.payment, w)
        }

        if ((obj.body != null && obj.body.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.body)
        }

        if ((obj.audience != null && obj.audience !== '')) {
          w.uint32(82)
          w.string(obj.audience)
        }

        if ((obj.signResponse != null && obj.signResponse !== false)) {
          w.uint32(88)
          w.bool(obj.signResponse)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: [],
          sig: [],
          nonce: uint8ArrayAlloc(0),
          service: '',
          method: '',
          args: [],
          paymentType: PaymentType.PAYMENT_NONE,
          body: uint8ArrayAlloc(0),
          audience: '',
          signResponse: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.id != null && obj.id.length === opts.limits.id) {
                throw new MaxLengthError('Decode error - repeated field "id" had too many elements')
              }

              obj.id.push(reader.string())
              break
            }
            case 2: {
              if (opts.limits?.sig != null && obj.sig.length === opts.limits.sig) {
                throw new MaxLengthError('Decode error - repeated field "sig" had too many elements')
              }

              obj.sig.push(reader.bytes())
              break
            }
            case 3: {
              obj.nonce = reader.bytes()
              break
            }
            case 4: {
              obj.service = reader.string()
              break
            }
            case 5: {
              obj.method = reader.string()
              break
            }
            case 6: {
              if (opts.limits?.args != null && obj.args.length === opts.limits.args) {
                throw new MaxLengthError('Decode error - repeated field "args" had too many elements')
              }

              obj.args.push(reader.string())
              break
            }
            case 7: {
              obj.paymentType = PaymentType.codec().decode(reader)
              break
            }
            case 8: {
              obj.payment = Payment.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.payment
              })
              break
            }
            case 9: {
              obj.body = reader.bytes()
              break
            }
            case 10: {
              obj.audience = reader.string()
              break
            }
            case 11: {
              obj.signResponse = reader.bool()
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
          id: 0,
          sig: 0,
          args: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.id != null && obj.id === opts.limits.id) {
                throw new MaxLengthError('Streaming decode error - repeated field "id" had too many elements')
              }

              yield {
                field: `${prefix}.id[]`,
                index: obj.id,
                value: reader.string()
              }

              obj.id++

              break
            }
            case 2: {
              if (opts.limits?.sig != null && obj.sig === opts.limits.sig) {
                throw new MaxLengthError('Streaming decode error - repeated field "sig" had too many elements')
              }

              yield {
                field: `${prefix}.sig[]`,
                index: obj.sig,
                value: reader.bytes()
              }

              obj.sig++

              break
            }
            case 3: {
              yield {
                field: `${prefix}.nonce`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.service`,
                value: reader.string()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.method`,
                value: reader.string()
              }
              break
            }
            case 6: {
              if (opts.limits?.args != null && obj.args === opts.limits.args) {
                throw new MaxLengthError('Streaming decode error - repeated field "args" had too many elements')
              }

              yield {
                field: `${prefix}.args[]`,
                index: obj.args,
                value: reader.string()
              }

              obj.args++

              break
            }
            case 7: {
              yield {
                field: `${prefix}.paymentType`,
                value: PaymentType.codec().decode(reader)
              }
              break
            }
            case 8: {
              yield * Payment.codec().stream(reader, reader.uint32(), `${prefix}.payment`, {
                limits: opts.limits?.payment
              })

              break
            }
            case 9: {
              yield {
                field: `${prefix}.body`,
                value: reader.bytes()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.audience`,
                value: reader.string()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.signResponse`,
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

  export interface RequestIdFieldEvent {
    field: '$.id[]'
    index: number
    value: string
  }

  export interface RequestSigFieldEvent {
    field: '$.sig[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface RequestNonceFieldEvent {
    field: '$.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface RequestServiceFieldEvent {
    field: '$.service'
    value: string
  }

  export interface RequestMethodFieldEvent {
    field: '$.method'
    value: string
  }

  export interface RequestArgsFieldEvent {
    field: '$.args[]'
    index: number
    value: string
  }

  export interface RequestPaymentTypeFieldEvent {
    field: '$.paymentType'
    value: PaymentType
  }

  export interface RequestPaymentCurrencyFieldEvent {
    field: '$.payment.currency'
    value: string
  }

  export interface RequestPaymentAmountFieldEvent {
    field: '$.payment.amount'
    value: bigint
  }

  export interface RequestPaymentTxnFieldEvent {
    field: '$.payment.txn'
    value: Uint8Array<ArrayBuffer>
  }

  export interface RequestPaymentDeferIdFieldEvent {
    field: '$.payment.deferId'
    value: string
  }

  export interface RequestPaymentDeferThresholdFieldEvent {
    field: '$.payment.deferThreshold'
    value: string
  }

  export interface RequestBodyFieldEvent {
    field: '$.body'
    value: Uint8Array<ArrayBuffer>
  }

  export interface RequestAudienceFieldEvent {
    field: '$.audience'
    value: string
  }

  export interface RequestSignResponseFieldEvent {
    field: '$.signResponse'
    value: boolean
  }

  export function encode (obj: Partial<Request>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Request.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Request>): Request {
    return decodeMessage(buf, Request.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Request>): Generator<RequestIdFieldEvent | RequestSigFieldEvent | RequestNonceFieldEvent | RequestServiceFieldEvent | RequestMethodFieldEvent | RequestArgsFieldEvent | RequestPaymentTypeFieldEvent | RequestPaymentCurrencyFieldEvent | RequestPaymentAmountFieldEvent | RequestPaymentTxnFieldEvent | RequestPaymentDeferIdFieldEvent | RequestPaymentDeferThresholdFieldEvent | RequestBodyFieldEvent | RequestAudienceFieldEvent | RequestSignResponseFieldEvent> {
    return streamMessage(buf, Request.codec(), opts)
  }
}

export enum Status {
  OK = 'OK',
  CLIENT_ERROR = 'CLIENT_ERROR',
  BAD_REQUEST = 'BAD_REQUEST',
  INVALID_SIGNATURE = 'INVALID_SIGNATURE',
  SERVICE_UNSUPPORTED = 'SERVICE_UNSUPPORTED',
  METHOD_UNSUPPORTED = 'METHOD_UNSUPPORTED',
  NOT_FOUND = 'NOT_FOUND',
  TOO_LARGE = 'TOO_LARGE',
  SERVER_ERROR = 'SERVER_ERROR',
  INSUFFICIENT_STORAGE = 'INSUFFICIENT_STORAGE',
  REQUEST_DECLINED = 'REQUEST_DECLINED',
  REFRESH_NONCE = 'REFRESH_NONCE',
  ACCESS_DENIED = 'ACCESS_DENIED',
  RATE_LIMITED = 'RATE_LIMITED',
  PAYMENT_DECLINED = 'PAYMENT_DECLINED',
  TOO_LOW = 'TOO_LOW',
  NO_DEFER = 'NO_DEFER'
}

enum __StatusValues {
  OK = 0,
  CLIENT_ERROR = 100,
  BAD_REQUEST = 101,
  INVALID_SIGNATURE = 102,
  SERVICE_UNSUPPORTED = 103,
  METHOD_UNSUPPORTED = 104,
  NOT_FOUND = 105,
  TOO_LARGE = 106,
  SERVER_ERROR = 200,
  INSUFFICIENT_STORAGE = 201,
  REQUEST_DECLINED = 300,
  REFRESH_NONCE = 301,
  ACCESS_DENIED = 302,
  RATE_LIMITED = 303,
  PAYMENT_DECLINED = 310,
  TOO_LOW = 311,
  NO_DEFER = 312
}

export namespace Status {
  export const codec = (): Codec<Status> => {
    return enumeration<Status>(__StatusValues)
  }
}

export enum Reason {
  REASON_UNSPECIFIED = 'REASON_UNSPECIFIED',
  REASON_NONCE_MISSING = 'REASON_NONCE_MISSING',
  REASON_NONCE_STALE = 'REASON_NONCE_STALE',
  REASON_CREDENTIAL_REQUIRED = 'REASON_CREDENTIAL_REQUIRED',
  REASON_MIN_BALANCE = 'REASON_MIN_BALANCE',
  REASON_POLICY_DENIED = 'REASON_POLICY_DENIED',
  REASON_SIGNATURE_REQUIRED = 'REASON_SIGNATURE_REQUIRED',
  REASON_RATE_LIMIT = 'REASON_RATE_LIMIT',
  REASON_MAX_CONCURRENT = 'REASON_MAX_CONCURRENT',
  REASON_PRICE = 'REASON_PRICE',
  REASON_MIN_PAYMENT = 'REASON_MIN_PAYMENT',
  REASON_DEFER_UNSIGNED = 'REASON_DEFER_UNSIGNED',
  REASON_DEFER_POLICY = 'REASON_DEFER_POLICY',
  REASON_TAB_SETTLED = 'REASON_TAB_SETTLED',
  REASON_TAB_DUE = 'REASON_TAB_DUE',
  REASON_TAB_BROKEN = 'REASON_TAB_BROKEN',
  REASON_TAB_LIMIT = 'REASON_TAB_LIMIT',
  REASON_TAB_COUNT = 'REASON_TAB_COUNT',
  REASON_PAYER_BROKEN = 'REASON_PAYER_BROKEN',
  REASON_CONFIRMATIONS = 'REASON_CONFIRMATIONS',
  REASON_NO_PAYMENT_BACKEND = 'REASON_NO_PAYMENT_BACKEND',
  REASON_TAB_THRESHOLD = 'REASON_TAB_THRESHOLD',
  REASON_TX_USED = 'REASON_TX_USED',
  REASON_WRONG_AUDIENCE = 'REASON_WRONG_AUDIENCE'
}

enum __ReasonValues {
  REASON_UNSPECIFIED = 0,
  REASON_NONCE_MISSING = 1,
  REASON_NONCE_STALE = 2,
  REASON_CREDENTIAL_REQUIRED = 10,
  REASON_MIN_BALANCE = 11,
  REASON_POLICY_DENIED = 12,
  REASON_SIGNATURE_REQUIRED = 13,
  REASON_RATE_LIMIT = 20,
  REASON_MAX_CONCURRENT = 21,
  REASON_PRICE = 30,
  REASON_MIN_PAYMENT = 31,
  REASON_DEFER_UNSIGNED = 40,
  REASON_DEFER_POLICY = 41,
  REASON_TAB_SETTLED = 42,
  REASON_TAB_DUE = 43,
  REASON_TAB_BROKEN = 44,
  REASON_TAB_LIMIT = 45,
  REASON_TAB_COUNT = 46,
  REASON_PAYER_BROKEN = 47,
  REASON_CONFIRMATIONS = 50,
  REASON_NO_PAYMENT_BACKEND = 51,
  REASON_TAB_THRESHOLD = 60,
  REASON_TX_USED = 61,
  REASON_WRONG_AUDIENCE = 70
}

export namespace Reason {
  export const codec = (): Codec<Reason> => {
    return enumeration<Reason>(__ReasonValues)
  }
}

export interface AcceptablePayment {
  paymentType: PaymentType
  currency: string
  amount: bigint
}

export namespace AcceptablePayment {
  let _codec: Codec<AcceptablePayment>

  export const codec = (): Codec<AcceptablePayment> => {
    if (_codec == null) {
      _codec = message<AcceptablePayment>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.paymentType != null && __PaymentTypeValues[obj.paymentType] !== 0) {
          w.uint32(8)
          PaymentType.codec().encode(obj.paymentType, w)
        }

        if ((obj.currency != null && obj.currency !== '')) {
          w.uint32(18)
          w.string(obj.currency)
        }

        if ((obj.amount != null && obj.amount !== 0n)) {
          w.uint32(24)
          w.uint64(obj.amount)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          paymentType: PaymentType.PAYMENT_NONE,
          currency: '',
          amount: 0n
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.paymentType = PaymentType.codec().decode(reader)
              break
            }
            case 2: {
              obj.currency = reader.string()
              break
            }
            case 3: {
              obj.amount = reader.uint64()
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
                field: `${prefix}.paymentType`,
                value: PaymentType.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.currency`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.amount`,
                value: reader.uint64()
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

  export interface AcceptablePaymentPaymentTypeFieldEvent {
    field: '$.paymentType'
    value: PaymentType
  }

  export interface AcceptablePaymentCurrencyFieldEvent {
    field: '$.currency'
    value: string
  }

  export interface AcceptablePaymentAmountFieldEvent {
    field: '$.amount'
    value: bigint
  }

  export function encode (obj: Partial<AcceptablePayment>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, AcceptablePayment.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AcceptablePayment>): AcceptablePayment {
    return decodeMessage(buf, AcceptablePayment.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AcceptablePayment>): Generator<AcceptablePaymentPaymentTypeFieldEvent | AcceptablePaymentCurrencyFieldEvent | AcceptablePaymentAmountFieldEvent> {
    return streamMessage(buf, AcceptablePayment.codec(), opts)
  }
}

export interface Response {
  id: string[]
  sig: Uint8Array<ArrayBuffer>[]
  nonce: Uint8Array<ArrayBuffer>
  status: Status
  detail: string
  body: Uint8Array<ArrayBuffer>
  nextNonce: Uint8Array<ArrayBuffer>
  acceptablePayment?: AcceptablePayment
  requestDigest: Uint8Array<ArrayBuffer>
  reason: Reason
  audience: string
}

export namespace Response {
  let _codec: Codec<Response>

  export const codec = (): Codec<Response> => {
    if (_codec == null) {
      _codec = message<Response>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.id != null && obj.id.length > 0) {
          for (const value of obj.id) {
            w.uint32(10)
            w.string(value)
          }
        }

        if (obj.sig != null && obj.sig.length > 0) {
          for (const value of obj.sig) {
            w.uint32(18)
            w.bytes(value)
          }
        }

        if ((obj.nonce != null && obj.nonce.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.nonce)
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(32)
          Status.codec().encode(obj.status, w)
        }

        if ((obj.detail != null && obj.detail !== '')) {
          w.uint32(42)
          w.string(obj.detail)
        }

        if ((obj.body != null && obj.body.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.body)
        }

        if ((obj.nextNonce != null && obj.nextNonce.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.nextNonce)
        }

        if (obj.acceptablePayment != null) {
          w.uint32(66)
          AcceptablePayment.codec().encode(obj.acceptablePayment, w)
        }

        if ((obj.requestDigest != null && obj.requestDigest.byteLength > 0)) {
          w.uint32(74)
          w.bytes(obj.requestDigest)
        }

        if (obj.reason != null && __ReasonValues[obj.reason] !== 0) {
          w.uint32(80)
          Reason.codec().encode(obj.reason, w)
        }

        if ((obj.audience != null && obj.audience !== '')) {
          w.uint32(90)
          w.string(obj.audience)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: [],
          sig: [],
          nonce: uint8ArrayAlloc(0),
          status: Status.OK,
          detail: '',
          body: uint8ArrayAlloc(0),
          nextNonce: uint8ArrayAlloc(0),
          requestDigest: uint8ArrayAlloc(0),
          reason: Reason.REASON_UNSPECIFIED,
          audience: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.id != null && obj.id.length === opts.limits.id) {
                throw new MaxLengthError('Decode error - repeated field "id" had too many elements')
              }

              obj.id.push(reader.string())
              break
            }
            case 2: {
              if (opts.limits?.sig != null && obj.sig.length === opts.limits.sig) {
                throw new MaxLengthError('Decode error - repeated field "sig" had too many elements')
              }

              obj.sig.push(reader.bytes())
              break
            }
            case 3: {
              obj.nonce = reader.bytes()
              break
            }
            case 4: {
              obj.status = Status.codec().decode(reader)
              break
            }
            case 5: {
              obj.detail = reader.string()
              break
            }
            case 6: {
              obj.body = reader.bytes()
              break
            }
            case 7: {
              obj.nextNonce = reader.bytes()
              break
            }
            case 8: {
              obj.acceptablePayment = AcceptablePayment.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.acceptablePayment
              })
              break
            }
            case 9: {
              obj.requestDigest = reader.bytes()
              break
            }
            case 10: {
              obj.reason = Reason.codec().decode(reader)
              break
            }
            case 11: {
              obj.audience = reader.string()
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
          id: 0,
          sig: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.id != null && obj.id === opts.limits.id) {
                throw new MaxLengthError('Streaming decode error - repeated field "id" had too many elements')
              }

              yield {
                field: `${prefix}.id[]`,
                index: obj.id,
                value: reader.string()
              }

              obj.id++

              break
            }
            case 2: {
              if (opts.limits?.sig != null && obj.sig === opts.limits.sig) {
                throw new MaxLengthError('Streaming decode error - repeated field "sig" had too many elements')
              }

              yield {
                field: `${prefix}.sig[]`,
                index: obj.sig,
                value: reader.bytes()
              }

              obj.sig++

              break
            }
            case 3: {
              yield {
                field: `${prefix}.nonce`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.status`,
                value: Status.codec().decode(reader)
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.detail`,
                value: reader.string()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.body`,
                value: reader.bytes()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.nextNonce`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield * AcceptablePayment.codec().stream(reader, reader.uint32(), `${prefix}.acceptablePayment`, {
                limits: opts.limits?.acceptablePayment
              })

              break
            }
            case 9: {
              yield {
                field: `${prefix}.requestDigest`,
                value: reader.bytes()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.reason`,
                value: Reason.codec().decode(reader)
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.audience`,
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

  export interface ResponseIdFieldEvent {
    field: '$.id[]'
    index: number
    value: string
  }

  export interface ResponseSigFieldEvent {
    field: '$.sig[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface ResponseNonceFieldEvent {
    field: '$.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ResponseStatusFieldEvent {
    field: '$.status'
    value: Status
  }

  export interface ResponseDetailFieldEvent {
    field: '$.detail'
    value: string
  }

  export interface ResponseBodyFieldEvent {
    field: '$.body'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ResponseNextNonceFieldEvent {
    field: '$.nextNonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ResponseAcceptablePaymentPaymentTypeFieldEvent {
    field: '$.acceptablePayment.paymentType'
    value: PaymentType
  }

  export interface ResponseAcceptablePaymentCurrencyFieldEvent {
    field: '$.acceptablePayment.currency'
    value: string
  }

  export interface ResponseAcceptablePaymentAmountFieldEvent {
    field: '$.acceptablePayment.amount'
    value: bigint
  }

  export interface ResponseRequestDigestFieldEvent {
    field: '$.requestDigest'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ResponseReasonFieldEvent {
    field: '$.reason'
    value: Reason
  }

  export interface ResponseAudienceFieldEvent {
    field: '$.audience'
    value: string
  }

  export function encode (obj: Partial<Response>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Response.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Response>): Response {
    return decodeMessage(buf, Response.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Response>): Generator<ResponseIdFieldEvent | ResponseSigFieldEvent | ResponseNonceFieldEvent | ResponseStatusFieldEvent | ResponseDetailFieldEvent | ResponseBodyFieldEvent | ResponseNextNonceFieldEvent | ResponseAcceptablePaymentPaymentTypeFieldEvent | ResponseAcceptablePaymentCurrencyFieldEvent | ResponseAcceptablePaymentAmountFieldEvent | ResponseRequestDigestFieldEvent | ResponseReasonFieldEvent | ResponseAudienceFieldEvent> {
    return streamMessage(buf, Response.codec(), opts)
  }
}
