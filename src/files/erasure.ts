/**
 * Reed–Solomon k-of-n over one segment (GF(2^8), the
 * `@digitaldefiance/reed-solomon-erasure.wasm` build of the Rust crate
 * reed-solomon-erasure): the sealed segment is cut into k data shards of
 * equal size (the last one zero-padded), and n − k parity shards are added.
 * Any k of the n shards give the segment back.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { ReedSolomonErasure } from '@digitaldefiance/reed-solomon-erasure.wasm'

/** The coder refused (too few shards, bad sizes) */
export class ErasureCodingError extends Error {
  static override name = 'ErasureCodingError'
  override name = 'ErasureCodingError'
}

/** GF(2^8): at most 256 shards in all */
export const MAX_SHARDS = 256

interface RsExports {
  memory: WebAssembly.Memory
  encode(ptr: number, len: number, k: number, parity: number): number
  reconstruct(ptr: number, len: number, k: number, parity: number, availPtr: number, availLen: number): number
  __wbindgen_malloc(size: number): number
}

let compiled: WebAssembly.Module | undefined

/**
 * Runs one encode or reconstruct in a fresh instance of the compiled wasm
 * module. The package's own wrapper keeps one instance, but its allocator
 * (wee_alloc) corrupts its heap after a reconstruct: the next reconstruct in
 * the same instance fails or reads out of bounds. A fresh instance per call
 * costs one memory allocation per segment and is always right. (Its own
 * loader also looks for __dirname, which ESM lacks.)
 */
function run (shards: Uint8Array, k: number, parity: number, available?: boolean[]): number {
  if (compiled == null) {
    const main = createRequire(import.meta.url).resolve('@digitaldefiance/reed-solomon-erasure.wasm')
    compiled = new WebAssembly.Module(readFileSync(new URL('./reed_solomon_erasure_bg.wasm', `file://${main}`)))
  }
  const x = new WebAssembly.Instance(compiled, {}).exports as unknown as RsExports
  const ptr = x.__wbindgen_malloc(shards.byteLength)
  new Uint8Array(x.memory.buffer).set(shards, ptr)
  let r: number
  if (available == null) {
    r = x.encode(ptr, shards.byteLength, k, parity)
  } else {
    const avail = x.__wbindgen_malloc(available.length)
    new Uint8Array(x.memory.buffer).set(available.map(a => a ? 1 : 0), avail)
    r = x.reconstruct(ptr, shards.byteLength, k, parity, avail, available.length)
  }
  if (r === ReedSolomonErasure.RESULT_OK) { shards.set(new Uint8Array(x.memory.buffer, ptr, shards.byteLength)) }
  return r
}

export function checkRedundancy (k: number, n: number): void {
  if (!Number.isInteger(k) || !Number.isInteger(n) || k < 1 || n <= k || n > MAX_SHARDS) {
    throw new RangeError(`redundancy ${k}/${n}: need 1 ≤ k < n ≤ ${MAX_SHARDS}`)
  }
}

/** Bytes of each shard of a segment of `length` bytes cut into k */
export function shardSize (length: number, k: number): number {
  return Math.max(1, Math.ceil(length / k))
}

/**
 * Encodes `data` into `total` shards (k data, total − k parity), each a view
 * of one buffer of total × shardSize bytes
 */
export function encodeShards (data: Uint8Array, k: number, total: number): Uint8Array[] {
  checkRedundancy(k, total)
  const size = shardSize(data.byteLength, k)
  const buf = new Uint8Array(size * total)
  buf.set(data, 0)
  const r = run(buf, k, total - k)
  if (r !== ReedSolomonErasure.RESULT_OK) { throw new ErasureCodingError(`encode: ${ReedSolomonErasure.getResultMessage(r)}`) }
  const out: Uint8Array[] = []
  for (let i = 0; i < total; i++) { out.push(buf.subarray(i * size, (i + 1) * size)) }
  return out
}

/**
 * The first `length` bytes of the segment from at least k shards
 * (`shards[i]` is shard i, undefined when missing; all present ones of `size` bytes)
 */
export function decodeShards (shards: Array<Uint8Array | undefined>, k: number, total: number, size: number, length: number): Uint8Array {
  checkRedundancy(k, total)
  const present = shards.map(s => s != null)
  if (present.filter(Boolean).length < k) { throw new ErasureCodingError(`need ${k} shards, have ${present.filter(Boolean).length}`) }
  if (length > size * k) { throw new ErasureCodingError('segment longer than its shards') }
  // all data shards here: no decoding needed
  if (present.slice(0, k).every(Boolean)) {
    const out = new Uint8Array(size * k)
    for (let i = 0; i < k; i++) { out.set(shards[i] as Uint8Array, i * size) }
    return out.subarray(0, length)
  }
  const buf = new Uint8Array(size * total)
  for (let i = 0; i < total; i++) {
    const s = shards[i]
    if (s != null) {
      if (s.byteLength !== size) { throw new ErasureCodingError(`shard ${i} is ${s.byteLength} bytes, not ${size}`) }
      buf.set(s, i * size)
    }
  }
  const r = run(buf, k, total - k, present)
  if (r !== ReedSolomonErasure.RESULT_OK) { throw new ErasureCodingError(`reconstruct: ${ReedSolomonErasure.getResultMessage(r)}`) }
  return buf.subarray(0, length)
}
