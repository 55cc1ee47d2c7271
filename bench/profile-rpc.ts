/**
 * Profiling aid: N sequential sha256.hash calls between two in-process nodes.
 * Run with `node --cpu-prof --cpu-prof-dir=/tmp/prof dist/bench/profile-rpc.js [N]`.
 */
/* eslint-disable no-console */
import '../src/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecloudNode } from '../src/node/index.js'

const n = Number(process.argv[2] ?? 3000)
const dirs = [await mkdtemp(join(tmpdir(), 'prof-a-')), await mkdtemp(join(tmpdir(), 'prof-b-'))]
const [a, b] = await Promise.all(dirs.map(async dataDir => createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'] })))
const body = new Uint8Array(1024)
const addr = b.addresses()[0]
for (let i = 0; i < 200; i++) { await a.opencloud.callOk(addr, { service: 'sha256', method: 'hash', body }) }
const t0 = performance.now()
const c0 = process.cpuUsage()
for (let i = 0; i < n; i++) { await a.opencloud.callOk(addr, { service: 'sha256', method: 'hash', body }) }
const cpu = process.cpuUsage(c0)
const ms = performance.now() - t0
console.log(`${n} calls: ${(n / ms * 1000).toFixed(0)}/s, CPU ${((cpu.user + cpu.system) / n).toFixed(0)} µs/call`)
await a.stop()
await b.stop()
await Promise.all(dirs.map(async d => rm(d, { recursive: true, force: true })))
