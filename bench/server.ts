/**
 * The serving side of the benchmarks: a decloud node that also speaks three
 * bare libp2p protocols used as baselines, and an in-memory blob service.
 *
 * - `/bench/echo/1.0.0`: length-prefixed echo (the RPC baseline)
 * - `/bench/sink/1.0.0`: repeatedly reads an 8-byte count N and N bytes, then
 * answers N as 8 bytes (raw upload)
 * - `/bench/source/1.0.0`: repeatedly reads an 8-byte count N, then writes N
 * bytes (raw download)
 * - OpenCloud service `memstore` (put/get/clear): like `storage` but keeps
 * blobs in a Map, to separate protocol cost from LevelDB cost
 *
 * Sink and source serve any number of transfers on one stream, so the raw
 * baseline runs on a long-lived, warmed-up stream (yamux grows a stream's
 * window from 256 KiB to 16 MiB as data flows), like OpenCloud's pooled
 * streams. The server runs in the benchmark's process, or (with
 * `--two-process`) in a child process started from `server-child.ts`.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { sha256 } from '../src/protocols/opencloud/api/signing.js'
import { ServiceError } from '../src/protocols/opencloud/api/template.js'
import { Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { MiB, startBenchNode } from './common.js'
import type { BenchNode } from './common.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { Stream } from '@libp2p/interface'

export const ECHO_PROTOCOL = '/bench/echo/1.0.0'
export const SINK_PROTOCOL = '/bench/sink/1.0.0'
export const SOURCE_PROTOCOL = '/bench/source/1.0.0'

/** Largest echo message; RPC bodies are far smaller */
export const MAX_ECHO_MESSAGE = 16 * MiB
/** Largest single transfer the sink accepts and the source writes */
export const MAX_TRANSFER_BYTES = 4096 * MiB
/** memstore refuses to hold more than this */
export const MEMSTORE_CAPACITY = 1024 * MiB
/** Chunk size the source protocol writes with (the OpenCloud body limit) */
export const SOURCE_CHUNK = 4 * MiB

const enc = new TextEncoder()

/**
 * An OpenCloud service that hashes the body (to name it, as `storage` does)
 * and keeps it in memory. Benchmark use only: bounded by MEMSTORE_CAPACITY,
 * `clear` drops everything.
 */
export function memoryStoreService (): ServiceDefinition {
  const blobs = new Map<string, Uint8Array>()
  let used = 0
  return {
    name: 'memstore',
    version: '1.0.0',
    description: 'keeps blobs in memory (benchmark baseline for storage)',
    methods: {
      put: {
        description: 'stores the body in memory; returns its id (hex SHA-256)',
        units: ['byte'],
        usage: (call) => [BigInt(call.body.byteLength)],
        handler: (call) => {
          // a signed request's body was hashed for its digest already: the server hashes a body once
          const id = Buffer.from(call.bodyHash ?? sha256(call.body)).toString('hex')
          if (!blobs.has(id)) {
            if (used + call.body.byteLength > MEMSTORE_CAPACITY) { throw new ServiceError(Status.INSUFFICIENT_STORAGE, 'memstore is full') }
            blobs.set(id, call.body)
            used += call.body.byteLength
          }
          return { body: enc.encode(id) }
        }
      },
      get: {
        description: 'returns a blob',
        args: '<id>',
        handler: (call) => {
          const blob = blobs.get(call.args[0] ?? '')
          if (blob == null) { throw new ServiceError(Status.NOT_FOUND, 'no such blob') }
          return { body: blob }
        }
      },
      clear: {
        description: 'drops every blob',
        handler: () => {
          blobs.clear()
          used = 0
          return {}
        }
      }
    }
  }
}

async function echoHandler (stream: Stream): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: MAX_ECHO_MESSAGE, maxBufferSize: MAX_ECHO_MESSAGE + 16 })
  try {
    while (true) {
      let msg
      try {
        msg = await lp.read()
      } catch (err: any) {
        if (err.name === 'UnexpectedEOFError' || stream.readStatus !== 'readable') { break }
        throw err
      }
      await lp.write(msg)
    }
    await stream.close({ signal: AbortSignal.timeout(2_000) })
  } catch (err: any) {
    stream.abort(err)
  }
}

/** `n` as 8 bytes, big-endian */
export function u64 (n: number): Uint8Array {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt(n))
  return b
}

/** The first 8 bytes of `b` as a big-endian unsigned integer */
export function readU64 (b: Uint8Array): number {
  return Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0))
}

/**
 * Splits a stream's incoming messages into 8-byte headers and the bytes that
 * follow them, without buffering the payload: `onHeader(n)` returns how many
 * payload bytes follow that header, `onPayloadEnd()` runs when they are in.
 */
function headerParser (onHeader: (n: number) => number, onPayloadEnd: () => void): (data: Uint8Array | Uint8ArrayList) => void {
  const header = new Uint8ArrayList()
  let remaining = 0
  return (data) => {
    const list = data instanceof Uint8Array ? new Uint8ArrayList(data) : data.sublist()
    while (list.byteLength > 0) {
      if (remaining > 0) {
        const take = Math.min(remaining, list.byteLength)
        list.consume(take)
        remaining -= take
        if (remaining === 0) { onPayloadEnd() }
        continue
      }
      const take = Math.min(8 - header.byteLength, list.byteLength)
      header.append(list.sublist(0, take))
      list.consume(take)
      if (header.byteLength === 8) {
        remaining = onHeader(readU64(header.subarray()))
        header.consume(8)
        if (remaining === 0) { onPayloadEnd() }
      }
    }
  }
}

function sinkHandler (stream: Stream): void {
  let expected = 0
  const parse = headerParser((n) => {
    if (n > MAX_TRANSFER_BYTES) { throw new Error('transfer too large') }
    expected = n
    return n
  }, () => {
    // the ack is 8 bytes: it never needs to wait for a drain
    stream.send(u64(expected))
  })
  stream.addEventListener('message', (evt) => {
    try {
      parse(evt.data)
    } catch (err: any) {
      stream.abort(err)
    }
  })
  stream.addEventListener('remoteCloseWrite', () => {
    stream.close({ signal: AbortSignal.timeout(2_000) }).catch((err) => { stream.abort(err) })
  })
}

let sourceData: Uint8Array | undefined

function sourceHandler (stream: Stream): void {
  // transfers are written one after the other
  let writing: Promise<void> = Promise.resolve()
  const write = async (n: number): Promise<void> => {
    sourceData ??= randomBytes(SOURCE_CHUNK)
    let sent = 0
    while (sent < n) {
      const chunk = sourceData.subarray(0, Math.min(SOURCE_CHUNK, n - sent))
      sent += chunk.byteLength
      if (!stream.send(chunk)) { await stream.onDrain({ signal: AbortSignal.timeout(30_000) }) }
    }
  }
  const parse = headerParser((n) => {
    if (n > MAX_TRANSFER_BYTES) { throw new Error('transfer too large') }
    writing = writing.then(async () => { await write(n) })
    writing.catch((err) => { stream.abort(err) })
    return 0
  }, () => {})
  stream.addEventListener('message', (evt) => {
    try {
      parse(evt.data)
    } catch (err: any) {
      stream.abort(err)
    }
  })
  stream.addEventListener('remoteCloseWrite', () => {
    writing.then(async () => { await stream.close({ signal: AbortSignal.timeout(2_000) }) }).catch((err) => { stream.abort(err) })
  })
}

/** Starts the benchmark server node in this process */
export async function startBenchServer (): Promise<BenchNode> {
  const server = await startBenchNode({ services: [memoryStoreService()] })
  const opts = { maxInboundStreams: 64, maxOutboundStreams: 64 }
  await server.node.libp2p.handle(ECHO_PROTOCOL, (stream) => { void echoHandler(stream) }, opts)
  await server.node.libp2p.handle(SINK_PROTOCOL, (stream) => { sinkHandler(stream) }, opts)
  await server.node.libp2p.handle(SOURCE_PROTOCOL, (stream) => { sourceHandler(stream) }, opts)
  return server
}

export interface ServerHandle {
  addr: string
  /** how client and server are laid out, for the report */
  layout: string
  /** the server's OpenCloud request counters (in-process only) */
  stats?(): { requests: number, byStatus: Record<string, number> }
  stop(): Promise<void>
}

/** Starts the server, in this process or in a child process */
export async function launchServer (twoProcess: boolean): Promise<ServerHandle> {
  if (!twoProcess) {
    const server = await startBenchServer()
    return {
      addr: server.addr,
      layout: 'one process (client and server nodes share one thread)',
      stats: () => server.node.opencloud.stats(),
      stop: async () => { await server.destroy() }
    }
  }
  const child = fork(fileURLToPath(new URL('./server-child.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const addr = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('server child did not start within 20 s')) }, 20_000)
    child.once('message', (m: any) => { clearTimeout(timer); resolve(String(m.addr)) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server child exited with code ${code}`)) })
  }).catch(async (err) => {
    child.kill()
    throw err
  })
  return {
    addr,
    layout: `two processes (server is child ${child.pid})`,
    async stop () {
      if (child.exitCode == null && child.connected) { child.send({ cmd: 'stop' }) }
      const timer = setTimeout(() => { child.kill() }, 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}
