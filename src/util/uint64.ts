/**
 * protons-runtime (7.1 and 8.0) encodes a uint64 between 2³¹ and 2³² − 1
 * wrongly: its LongBits keeps the low word as a signed int32, and the varint
 * writer stops at once on a negative low word, writing zero bytes (3 000 000
 * 000 sat, i.e. 30 BTC, went out as 0). Decoding is right. Until the library
 * is fixed, values of that range are written through its number path, which
 * is exact below 2⁵³. Importing this module applies the fix once per process.
 */
import { writer } from 'protons-runtime'

const LOW = 2n ** 31n
const HIGH = 2n ** 32n

const proto = Object.getPrototypeOf(writer()) as { uint64(value: bigint): unknown, uint64Number(value: number): unknown, __decloudUint64?: true }
if (proto.__decloudUint64 !== true) {
  const uint64 = proto.uint64
  proto.uint64 = function (this: typeof proto, value: bigint) {
    return value >= LOW && value < HIGH ? this.uint64Number(Number(value)) : uint64.call(this, value)
  }
  proto.__decloudUint64 = true
}

export {}
