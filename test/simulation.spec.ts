import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

interface SimBuyer {
  name: string
  mode: string
  put: { kind: string, promised: string } | null
  promised: string
  paidOnPromises: string
  tabs: Array<{ deferId: string, status: string }>
}

/** Runs the market simulation program; resolves with its exit code, output and JSON summary */
async function simulate (args: string[], timeout: number): Promise<{ code: number | null, stdout: string, stderr: string, summary?: { ok: boolean, failures: string[], buyers: SimBuyer[] } }> {
  const dir = await mkdtemp(join(tmpdir(), 'decloud-sim-spec-'))
  const json = join(dir, 'sim.json')
  const script = fileURLToPath(new URL('./simulation/market-sim.js', import.meta.url))
  try {
    const { code, stdout, stderr } = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
      execFile(process.execPath, [script, ...args, '--json', json], { timeout, maxBuffer: 4 * 1024 * 1024 }, (err: any, stdout, stderr) => {
        // a failed run's err.code is the exit code (null when it was killed)
        const code: number | null = err == null ? 0 : err.code
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr })
      })
    })
    const summary = await readFile(json, 'utf8').then(s => JSON.parse(s), () => undefined)
    return { code, stdout, stderr, summary }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('the market simulation (test/simulation/market-sim.ts)', function () {
  this.timeout(150_000)

  it('passes in a small market: the auto buyer promises on the seller\'s default tab and that tab is settled', async () => {
    // 5 nodes, 1 seller: buyer-0 pays auto, buyer-1 defers until completion, then the freeloader
    const { code, stdout, stderr, summary } = await simulate(['--nodes', '5', '--sellers', '1', '--deadline', '30000'], 140_000)
    assert.ok(summary != null, `no summary written (exit ${String(code)})\n${stdout}\n${stderr}`)
    assert.deepEqual(summary.failures, [], stdout)
    assert.equal(summary.ok, true)
    assert.equal(code, 0, stdout)
    const auto = summary.buyers.find(b => b.mode === 'auto')
    assert.ok(auto != null)
    // the seller's default policy lets a dev-funded buyer run a tab: auto takes the promise it offers
    assert.equal(auto.put?.kind, 'defer')
    assert.ok(BigInt(auto.promised) > 0n)
    assert.equal(auto.paidOnPromises, auto.promised)
    assert.ok(auto.tabs.length > 0)
    assert.deepEqual(auto.tabs.map(t => t.status), auto.tabs.map(() => 'settled'))
  })
})
