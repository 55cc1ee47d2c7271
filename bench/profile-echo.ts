/**
 * Profiling aid, the baseline of profile-rpc.ts: N sequential 1 KiB
 * length-prefixed echoes on one libp2p stream between two in-process nodes.
 */
/* eslint-disable no-console */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { createDecloudNode } from '../src/node/index.js'

const n = Number(process.argv[2] ?? 3000)
const dirs = [await mkdtemp(join(tmpdir(), 'prof-a-')), await mkdtemp(join(tmpdir(), 'prof-b-'))]
const [a, b] = await Promise.all(dirs.map(async dataDir => createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'] })))
await b.libp2p.handle('/bench/echo/1.0.0', async (stream) => {
  const lp = lpStream(stream)
  while (true) {
    const msg = await lp.read().catch(() => null)
    if (msg == null) { break }
    await lp.write(msg)
  }
})
const lp = lpStream(await a.libp2p.dialProtocol(b.libp2p.getMultiaddrs()[0], '/bench/echo/1.0.0'))
const body = new Uint8Array(1024)
for (let i = 0; i < 200; i++) { await lp.write(body); await lp.read() }
const t0 = performance.now()
const c0 = process.cpuUsage()
for (let i = 0; i < n; i++) { await lp.write(body); await lp.read() }
const cpu = process.cpuUsage(c0)
const ms = performance.now() - t0
console.log(`${n} echoes: ${(n / ms * 1000).toFixed(0)}/s, CPU ${((cpu.user + cpu.system) / n).toFixed(0)} µs/echo`)
await a.stop()
await b.stop()
await Promise.all(dirs.map(async d => rm(d, { recursive: true, force: true })))
