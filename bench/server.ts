/**
 * The serving side of the benchmarks: a decloud node that also speaks three
 * bare libp2p protocols used as baselines, and an in-memory blob service.
 *
 * - `/bench/echo/1.0.0`: length-prefixed echo (the RPC baseline)
 * - `/bench/sink/1.0.0`: reads everything, then answers the byte count as 8 bytes (raw upload)
 * - `/bench/source/1.0.0`: reads an 8-byte count N, writes N bytes, closes (raw download)
 * - OpenCloud service `memstore` (put/get/clear): like `storage` but keeps
 *   blobs in a Map, to separate protocol cost from LevelDB cost
 *
 * The server runs in the benchmark's process, or (with `--two-process`) in
 * a child process started from `server-child.ts`.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { byteStream, lpStream } from '@libp2p/utils'
import { Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { sha256 } from '../src/protocols/opencloud/signing.js'
import { ServiceError } from '../src/services/template.js'
import { MiB, startBenchNode } from './common.js'
import type { BenchNode } from './common.js'
import type { ServiceDefinition } from '../src/services/template.js'
import type { Stream } from '@libp2p/interface'

export const ECHO_PROTOCOL = '/bench/echo/1.0.0'
export const SINK_PROTOCOL = '/bench/sink/1.0.0'
export const SOURCE_PROTOCOL = '/bench/source/1.0.0'

/** Largest echo message; RPC bodies are far smaller */
export const MAX_ECHO_MESSAGE = 16 * MiB
/** The source protocol writes at most this many bytes per stream */
export const MAX_SOURCE_BYTES = 4096 * MiB
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
          const id = Buffer.from(sha256(call.body)).toString('hex')
          if (!blobs.has(id)) {
            if (used + call.body.byteLength > MEMSTORE_CAPACITY) throw new ServiceError(Status.INSUFFICIENT_STORAGE, 'memstore is full')
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
          if (blob == null) throw new ServiceError(Status.NOT_FOUND, 'no such blob')
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
        if (err.name === 'UnexpectedEOFError' || stream.readStatus !== 'readable') break
        throw err
      }
      await lp.write(msg)
    }
    await stream.close({ signal: AbortSignal.timeout(2_000) })
  } catch (err: any) {
    stream.abort(err)
  }
}

async function sinkHandler (stream: Stream): Promise<void> {
  try {
    let n = 0
    for await (const chunk of stream) n += chunk.byteLength
    const ack = new Uint8Array(8)
    new DataView(ack.buffer).setBigUint64(0, BigInt(n))
    stream.send(ack)
    await stream.close({ signal: AbortSignal.timeout(2_000) })
  } catch (err: any) {
    stream.abort(err)
  }
}

let sourceData: Uint8Array | undefined

async function sourceHandler (stream: Stream): Promise<void> {
  try {
    const bytes = byteStream(stream, { maxBufferSize: 64 })
    const req = await bytes.read({ bytes: 8, signal: AbortSignal.timeout(10_000) })
    const n = Number(new DataView(req.subarray().buffer, req.subarray().byteOffset, 8).getBigUint64(0))
    if (n > MAX_SOURCE_BYTES) throw new Error('too many bytes asked')
    sourceData ??= randomBytes(SOURCE_CHUNK)
    let sent = 0
    while (sent < n) {
      const chunk = sourceData.subarray(0, Math.min(SOURCE_CHUNK, n - sent))
      sent += chunk.byteLength
      if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(30_000) })
    }
    await stream.close({ signal: AbortSignal.timeout(30_000) })
  } catch (err: any) {
    stream.abort(err)
  }
}

/** Starts the benchmark server node in this process */
export async function startBenchServer (): Promise<BenchNode> {
  const server = await startBenchNode({ services: [memoryStoreService()] })
  const opts = { maxInboundStreams: 64, maxOutboundStreams: 64 }
  await server.node.libp2p.handle(ECHO_PROTOCOL, (stream) => { void echoHandler(stream) }, opts)
  await server.node.libp2p.handle(SINK_PROTOCOL, (stream) => { void sinkHandler(stream) }, opts)
  await server.node.libp2p.handle(SOURCE_PROTOCOL, (stream) => { void sourceHandler(stream) }, opts)
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
      if (child.exitCode == null && child.connected) child.send({ cmd: 'stop' })
      const timer = setTimeout(() => { child.kill() }, 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}
