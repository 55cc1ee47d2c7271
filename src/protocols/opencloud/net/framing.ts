/**
 * Frames on an OpenCloud stream: an unsigned varint length, then that many
 * bytes of protobuf. `lpStream` from @libp2p/utils is not used for reading
 * because it accepts an unbounded run of varint continuation bytes (each is
 * kept, so a peer sending 0xff forever grows a buffer forever), it cannot tell
 * a clean end of stream from a truncated frame, and one signal has to cover
 * both the wait for a request and its transfer. This reader bounds the length
 * prefix to the bytes needed for the largest frame, rejects an oversized
 * length before reading any of the data, times the idle wait and the transfer
 * separately, and charges buffered bytes to a shared per-peer budget.
 */
import { TimeoutError } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { BufferBudgetExceededError, FrameTimeoutError, FrameTooLargeError, IdleTimeoutError, TruncatedFrameError } from '../api/errors.js'
import type { AbortOptions, Stream } from '@libp2p/interface'

type ByteStream = ReturnType<typeof byteStream<Stream>>

/** Bytes of the unsigned varint (LEB128) encoding of `n` */
export function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) {
    n = Math.floor(n / 0x80)
    len++
  }
  return len
}

/** Unsigned varint (LEB128) encoding of a non-negative safe integer */
export function encodeVarint (n: number): Uint8Array {
  const out = new Uint8Array(varintLength(n))
  for (let i = 0; i < out.length; i++) {
    const low = n % 0x80
    n = Math.floor(n / 0x80)
    out[i] = i < out.length - 1 ? low | 0x80 : low
  }
  return out
}

/** Bytes of the complete varint at the head of `bytes` */
function varintPrefixLength (bytes: Uint8ArrayList): number {
  let i = 0
  while ((bytes.get(i) & 0x80) !== 0) { i++ }
  return i + 1
}

/** Decodes a complete unsigned varint (every byte but the last has the high bit set) */
export function decodeVarint (bytes: Uint8ArrayList | Uint8Array): number {
  let n = 0
  let scale = 1
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes instanceof Uint8Array ? bytes[i] : bytes.get(i)
    n += (b & 0x7f) * scale
    scale *= 0x80
  }
  return n
}

/**
 * Bytes buffered from inbound streams, charged per peer and in total. Every
 * byte a stream has received but not yet handed out as a frame counts, so a
 * peer that opens many streams and half-fills each cannot hold more than
 * `perPeer` bytes of this node's memory, and all peers together no more than
 * `total`. The stream that goes over is reset.
 */
export class BufferBudget {
  readonly perPeer: number
  readonly total: number
  private used = 0
  private readonly peers = new Map<string, number>()

  constructor (init: { perPeer: number, total: number }) {
    this.perPeer = init.perPeer
    this.total = init.total
  }

  /** Adds `delta` (may be negative) to `peer`'s charge; false when a limit is now exceeded */
  charge (peer: string, delta: number): boolean {
    if (delta === 0) { return this.within(peer) }
    const next = (this.peers.get(peer) ?? 0) + delta
    if (next <= 0) { this.peers.delete(peer) } else { this.peers.set(peer, next) }
    this.used += delta
    return this.within(peer)
  }

  private within (peer: string): boolean {
    return this.used <= this.total && (this.peers.get(peer) ?? 0) <= this.perPeer
  }

  /** Bytes currently charged to `peer` (or to everyone) */
  usage (peer?: string): number {
    return peer == null ? this.used : (this.peers.get(peer) ?? 0)
  }

  /** Peers with a charge (bounded by the open inbound streams) */
  get peerCount (): number {
    return this.peers.size
  }
}

export interface FrameReaderInit {
  maxFrameSize: number
  /** charge buffered bytes to this budget under `peer` */
  budget?: BufferBudget
  peer?: string
}

export interface FrameReadOptions extends AbortOptions {
  /** longest wait for the first byte of the frame (ms); none when undefined */
  idleTimeout?: number
  /** longest time from the first byte to the last one (ms); none when undefined */
  messageTimeout?: number
}

interface Deadline {
  signal?: AbortSignal
  clear(): void
}

/**
 * A signal that aborts with `reason()` after `ms`, or with the outer
 * signal's reason when that aborts first. `clear()` drops the timer and the
 * listener (no AbortSignal.any: it keeps dependents on long-lived signals).
 */
export function deadline (ms: number | undefined, reason: () => Error, outer?: AbortSignal): Deadline {
  if (ms == null) { return { signal: outer, clear: () => {} } }
  const controller = new AbortController()
  const timer = setTimeout(() => { controller.abort(reason()) }, ms)
  const onAbort = (): void => { controller.abort(outer?.reason) }
  if (outer?.aborted === true) { onAbort() } else { outer?.addEventListener('abort', onAbort, { once: true }) }
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer)
      outer?.removeEventListener('abort', onAbort)
    }
  }
}

/** Reads length-prefixed frames from a libp2p stream, within bounds */
export class FrameReader {
  private readonly bytes: ByteStream
  private readonly stream: Stream
  private readonly maxFrameSize: number
  private readonly maxLengthLength: number
  private readonly budget?: BufferBudget
  private readonly peer: string
  /** bytes of this stream currently charged to the budget */
  private charged = 0
  private released = false
  /** why this reader reset the stream, reported by the read in progress */
  private failure?: Error
  /** aborts the wait in progress when its timeout passes (reads without an outer signal) */
  private timeouts?: AbortController

  constructor (stream: Stream, init: FrameReaderInit) {
    this.stream = stream
    this.maxFrameSize = init.maxFrameSize
    this.maxLengthLength = varintLength(init.maxFrameSize)
    // the byte stream keeps at most one frame and its prefix: a peer that
    // sends more than that before it is read (it must wait for the
    // response) gets the stream aborted by the byte stream
    this.bytes = byteStream(stream, { maxBufferSize: init.maxFrameSize + this.maxLengthLength })
    this.budget = init.budget
    this.peer = init.peer ?? ''
    if (this.budget != null) {
      // every byte received is charged until a read hands it out
      stream.addEventListener('message', this.onMessage)
      stream.addEventListener('close', this.onClose)
    }
  }

  private readonly onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    if (!this.charge(evt.data.byteLength)) {
      this.release()
      this.failure = new BufferBudgetExceededError(`inbound buffer budget exceeded for peer ${this.peer}`)
      this.stream.abort(this.failure)
    }
  }

  private readonly onClose = (): void => {
    this.release()
  }

  /** Charges (or with a negative delta refunds) bytes this stream holds */
  private charge (delta: number): boolean {
    if (this.budget == null || this.released) { return true }
    this.charged += delta
    return this.budget.charge(this.peer, delta)
  }

  /** Returns this stream's charge to the budget; called when the stream is done */
  release (): void {
    if (this.budget == null || this.released) { return }
    this.budget.charge(this.peer, -this.charged)
    this.released = true
    this.charged = 0
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onClose)
  }

  /**
   * The next frame, or null when the remote closed its end cleanly between
   * frames. Throws FrameTooLargeError when the announced length (or the
   * length prefix itself) exceeds the limit, before any of the data is read;
   * TruncatedFrameError when the stream ends inside a frame; IdleTimeoutError
   * when no frame starts within `idleTimeout`; FrameTimeoutError when a
   * started frame is not complete within `messageTimeout`; the outer
   * signal's reason when it aborts; the stream's error when it is reset.
   */
  async read (options: FrameReadOptions = {}): Promise<Uint8ArrayList | null> {
    const whole = this.buffered()
    if (whole >= 0) {
      // the whole frame is here already (a small request usually arrives in
      // one piece): no wait, so no timers
      const all = await this.bytes.read({ bytes: whole })
      this.charge(-all.byteLength)
      return all.sublist(varintPrefixLength(all))
    }
    let first: Uint8ArrayList
    const idle = this.timed(options.idleTimeout, 'idle', options.signal)
    try {
      first = await this.bytes.read({ bytes: 1, signal: idle.signal })
    } catch (err: any) {
      if (this.failure != null) { throw this.failure }
      // asked for one byte, the byte stream reports a clean end as "EOF after 0/1 bytes"
      if (err.name === 'UnexpectedEOFError') { return null }
      throw err
    } finally {
      idle.clear()
    }
    this.charge(-first.byteLength)
    const rest = this.buffered(first.get(0))
    if (rest >= 0) {
      // the rest of the frame came with its first byte
      const all = rest === 0 ? first : new Uint8ArrayList(first, await this.bytes.read({ bytes: rest }))
      this.charge(-(all.byteLength - 1))
      return all.sublist(varintPrefixLength(all))
    }
    const transfer = this.timed(options.messageTimeout, 'transfer', options.signal)
    try {
      return await this.readRest(first, transfer.signal)
    } finally {
      transfer.clear()
    }
  }

  /**
   * A deadline for one wait. Without an outer signal (the server's reads)
   * one controller serves every wait of this reader: when it fires the
   * stream is over anyway, so it never needs to be re-created, and a wait
   * costs a timer rather than a controller and its signal.
   */
  private timed (ms: number | undefined, phase: 'idle' | 'transfer', outer?: AbortSignal): Deadline {
    const reason = (): Error => phase === 'idle' ? new IdleTimeoutError(`no request within ${ms} ms`) : new FrameTimeoutError(`frame not complete within ${ms} ms`)
    if (outer != null || ms == null) { return deadline(ms, reason, outer) }
    this.timeouts ??= new AbortController()
    const controller = this.timeouts
    const timer = setTimeout(() => { controller.abort(reason()) }, ms)
    return { signal: controller.signal, clear: () => { clearTimeout(timer) } }
  }

  /**
   * The bytes to take from the read buffer for a complete frame at its head
   * (after `head`, the frame's first byte when it was already taken), or -1
   * when the frame is incomplete or out of bounds: the timed path then
   * waits for it and reports the errors
   */
  private buffered (head?: number): number {
    // the byte stream's buffer (not in its type; without it every read takes the timed path)
    const buf = (this.bytes as unknown as { readBuffer?: Uint8ArrayList }).readBuffer
    if (buf == null || this.failure != null) { return -1 }
    const have = buf.byteLength
    const offset = head == null ? 0 : 1
    let length = 0
    let scale = 1
    for (let i = 0; i < this.maxLengthLength && i < have + offset; i++) {
      const b = i < offset ? head as number : buf.get(i - offset)
      length += (b & 0x7f) * scale
      scale *= 0x80
      if ((b & 0x80) === 0) {
        const need = i + 1 + length - offset
        if (length > this.maxFrameSize || have < need) { return -1 }
        return need
      }
    }
    return -1
  }

  private async readRest (first: Uint8ArrayList, signal?: AbortSignal): Promise<Uint8ArrayList> {
    const prefix = new Uint8ArrayList(first)
    // at most maxLengthLength prefix bytes: one more continuation byte can
    // only announce a frame above the limit
    while ((prefix.get(prefix.byteLength - 1) & 0x80) !== 0) {
      if (prefix.byteLength >= this.maxLengthLength) {
        throw new FrameTooLargeError(`length prefix longer than ${this.maxLengthLength} bytes`, undefined)
      }
      prefix.append(await this.readExactly(1, signal))
    }
    const length = decodeVarint(prefix)
    if (length > this.maxFrameSize) {
      throw new FrameTooLargeError(`frame of ${length} bytes exceeds the limit of ${this.maxFrameSize} bytes`, length)
    }
    if (length === 0) { return new Uint8ArrayList() }
    return this.readExactly(length, signal)
  }

  private async readExactly (n: number, signal?: AbortSignal): Promise<Uint8ArrayList> {
    try {
      const buf = await this.bytes.read({ bytes: n, signal })
      this.charge(-buf.byteLength)
      if (buf.byteLength !== n) { throw new TruncatedFrameError('stream ended inside a frame') }
      return buf
    } catch (err: any) {
      if (this.failure != null) { throw this.failure }
      if (err.name === 'UnexpectedEOFError') { throw new TruncatedFrameError('stream ended inside a frame') }
      throw err
    }
  }

  /**
   * Writes one frame (one buffer, or the pieces of one encoded message), waiting for the stream to drain when its buffer is
   * full, at most `timeout` ms (the timer is only set when there is a wait)
   */
  async write (data: Uint8Array | Uint8ArrayList, options: AbortOptions & { timeout?: number } = {}): Promise<void> {
    // the pieces of `data` go out as they are (a large body is never joined into one buffer)
    if (this.stream.send(new Uint8ArrayList(encodeVarint(data.byteLength), data))) { return }
    const wait = deadline(options.timeout, () => new TimeoutError(`frame not sent within ${options.timeout} ms`), options.signal)
    try {
      await this.stream.onDrain({ signal: wait.signal })
    } finally {
      wait.clear()
    }
  }
}
