/* eslint-disable no-console */
/**
 * A big file through `decloud put` / `decloud get` with bounded memory
 * (issue 15: a 1 GiB put/get stays under 300 MiB RSS). Every part is its own
 * process, as a user runs it: 4 seller nodes, the buyer's node, and the CLI
 * put and get (`--redundancy 2/4`, `--no-payments`). The peak RSS (VmHWM
 * from /proc) of the buyer's node and of each CLI process is checked against
 * the limit; the bytes got back must hash the same as those put.
 * Too slow for the test suite on a shared machine: `npm run test:big`
 * (`node dist/bench/files-big.js --size 256M` for a shorter run). Linux only.
 * Exits 1 when a limit is crossed or the bytes differ.
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { findRunningNode } from '../src/control/index.js'
import { BIN, killAll, startCliNode } from '../test/cli-fixtures.js'
import { eventually, tempDir } from '../test/fixtures.js'
import { MiB, flags, fmt, machine, parseSize } from './common.js'
import type { CliNode } from '../test/cli-fixtures.js'

const USAGE = `usage: node dist/bench/files-big.js [options]
  --size BYTES     bytes of the file (default 1G)
  --limit BYTES    most peak RSS allowed for the buyer's node and each CLI process (default 300M)
  --json           also print the results as one JSON line`

const opts = flags({ size: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } }, USAGE)
const size = parseSize((opts.size as string | undefined) ?? '1G')
const limit = parseSize((opts.limit as string | undefined) ?? '300M')

/** Peak RSS of a live process, bytes (VmHWM); undefined once it has exited */
async function peakRss (pid: number): Promise<number | undefined> {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return m != null ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** Runs `decloud …args`, sampling its peak RSS until it exits */
async function runMeasured (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string, ms: number, peak: number }> {
  const t0 = performance.now()
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  let peak = 0
  const timer = setInterval(() => {
    void peakRss(child.pid ?? -1).then(p => { if (p != null) { peak = Math.max(peak, p) } })
  }, 100)
  const [code] = await once(child, 'exit') as [number | null]
  clearInterval(timer)
  return { code, stdout, stderr, ms: performance.now() - t0, peak }
}

async function hashFile (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(path)) { h.update(c as Buffer) }
  return h.digest('hex')
}

async function main (): Promise<void> {
  console.log(`# decloud put/get of ${fmt(size / MiB, 0)} MiB, 2/4 over 4 sellers, every node and CLI its own process; limit ${fmt(limit / MiB, 0)} MiB peak RSS`)
  console.log(`# ${machine()}`)
  const dir = await tempDir('decloud-big-')
  const sellers: CliNode[] = []
  let buyer: CliNode | undefined
  let failed = false
  try {
    sellers.push(await startCliNode(join(dir, 'seller-0')))
    for (let i = 1; i < 4; i++) { sellers.push(await startCliNode(join(dir, `seller-${i}`), ['--bootstrap', sellers[0].addr])) }
    buyer = await startCliNode(join(dir, 'buyer'), ['--bootstrap', sellers[0].addr])
    const running = await findRunningNode(buyer.dataDir)
    if (running == null) { throw new Error('the buyer node is not running') }
    const found = await eventually(async () => (await running.client.sellers({ service: 'storage', timeout: 2_000 })).sellers.length >= 4, 60_000, 500)
    if (!found) { throw new Error('the buyer did not find the 4 sellers') }

    const input = join(dir, 'big.bin')
    const h = createHash('sha256')
    const w = createWriteStream(input)
    for (let at = 0; at < size; at += 16 * MiB) {
      const chunk = randomBytes(Math.min(16 * MiB, size - at))
      h.update(chunk)
      if (!w.write(chunk)) { await once(w, 'drain') }
    }
    w.end()
    await once(w, 'finish')
    const want = h.digest('hex')
    const buyerPid = buyer.process.pid ?? -1
    const startRss = await peakRss(buyerPid) ?? 0

    const put = await runMeasured(['put', input, '--redundancy', '2/4', '--json', '--data-dir', buyer.dataDir])
    if (put.code !== 0) { throw new Error(`put failed: ${put.stderr}`) }
    const { id } = JSON.parse(put.stdout)
    const afterPut = await peakRss(buyerPid) ?? 0
    const output = join(dir, 'copy.bin')
    const get = await runMeasured(['get', id, '--out', output, '--data-dir', buyer.dataDir])
    if (get.code !== 0) { throw new Error(`get failed: ${get.stderr}`) }
    const afterGet = await peakRss(buyerPid) ?? 0
    const same = await hashFile(output) === want
    const sellerPeaks = await Promise.all(sellers.map(async s => peakRss(s.process.pid ?? -1)))

    const mb = (b: number): string => `${fmt(b / MiB, 0)} MiB`
    console.log(`put  ${fmt(put.ms / 1000, 1)} s  ${fmt(size / MiB / (put.ms / 1000), 1)} MiB/s  CLI peak RSS ${mb(put.peak)}`)
    console.log(`get  ${fmt(get.ms / 1000, 1)} s  ${fmt(size / MiB / (get.ms / 1000), 1)} MiB/s  CLI peak RSS ${mb(get.peak)}`)
    console.log(`buyer node peak RSS: ${mb(startRss)} at start, ${mb(afterPut)} after put, ${mb(afterGet)} after get`)
    console.log(`seller nodes peak RSS: ${sellerPeaks.map(p => mb(p ?? 0)).join(', ')}`)
    console.log(`bytes identical: ${same}`)
    const over = [['buyer node', afterGet], ['CLI put', put.peak], ['CLI get', get.peak]].filter(([, v]) => (v as number) >= limit)
    for (const [what, v] of over) { console.log(`FAIL: ${String(what)} peak RSS ${mb(v as number)} ≥ ${mb(limit)}`) }
    if (!same) { console.log('FAIL: the bytes got back differ') }
    failed = over.length > 0 || !same
    if (opts.json === true) {
      console.log(JSON.stringify({ size, putMs: Math.round(put.ms), getMs: Math.round(get.ms), buyerPeak: afterGet, buyerPeakAfterPut: afterPut, putCliPeak: put.peak, getCliPeak: get.peak, sellerPeaks, same, limit }))
    }
  } finally {
    await buyer?.stop()
    await Promise.all(sellers.map(async s => s.stop()))
    await killAll()
  }
  process.exitCode = failed ? 1 : 0
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
