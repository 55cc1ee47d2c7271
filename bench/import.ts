/* eslint-disable no-console */
/**
 * What importing decloud costs an app: time and memory to import
 *
 * 1. plain libp2p: `libp2p`, `@libp2p/tcp`, `@chainsafe/libp2p-noise`,
 * `@libp2p/yamux`, `@libp2p/identify` (what an embedding app loads anyway);
 * 2. the same plus `decloud/opencloud` (the light entry point);
 * 3. the same plus `decloud` (the full entry point).
 *
 * Each is measured in fresh node processes (no shared module cache): import
 * time (from the first import to the last resolved), time since process start,
 * CPU time of the whole process (user + system: less disturbed than wall time
 * by other programs on the machine), RSS after import, medians over the runs; then one more run per case with
 * test/module-list.js preloaded counts the modules and packages loaded.
 *
 * Usage: `node dist/bench/import.js [--runs N]` (default 7), after a build.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { flags, fmt, machine, median, parsePositive, runBenchmark, spread, table } from './common.js'

const run = promisify(execFile)
const USAGE = `usage: node dist/bench/import.js [--runs N]
  --runs N   fresh processes per case (default 7)`

const root = fileURLToPath(new URL('../../', import.meta.url))
const listHook = fileURLToPath(new URL('../test/module-list.js', import.meta.url))
const LIBP2P = ['libp2p', '@libp2p/tcp', '@chainsafe/libp2p-noise', '@libp2p/yamux', '@libp2p/identify']
const CASES: Array<{ name: string, specifiers: string[] }> = [
  { name: 'plain libp2p', specifiers: LIBP2P },
  { name: 'libp2p + decloud/opencloud', specifiers: [...LIBP2P, 'decloud/opencloud'] },
  { name: 'libp2p + decloud', specifiers: [...LIBP2P, 'decloud'] }
]

interface Sample { importMs: number, sinceStartMs: number, cpuMs: number, rssMiB: number }

/** the child: imports in order, then reports */
function script (specifiers: string[]): string {
  return `const t0 = performance.now()
for (const s of ${JSON.stringify(specifiers)}) { await import(s) }
const t1 = performance.now()
const cpu = process.cpuUsage()
console.log(JSON.stringify({ importMs: t1 - t0, sinceStartMs: t1, cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: process.memoryUsage().rss / 2 ** 20 }))`
}

async function sample (specifiers: string[]): Promise<Sample> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script(specifiers)], { cwd: root, timeout: 60_000 })
  return JSON.parse(stdout)
}

async function modules (specifiers: string[]): Promise<{ files: number, cjs: number, packages: number }> {
  const { stdout } = await run(process.execPath, ['--import', listHook, '--input-type=module', '-e', `${script(specifiers)}\nawait new Promise((resolve) => setTimeout(resolve, 50))`], { cwd: root, timeout: 60_000 })
  const list: string[] = JSON.parse(stdout.trim().split('\n').pop() ?? '{}').modules
  const files = new Set(list.map(m => m.replace(/^file:\/\//, '')).filter(m => !m.startsWith('node:')))
  const packages = new Set([...files].map(f => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f)?.[1]).filter(p => p != null))
  const cjs = [...files].filter(f => f.endsWith('.js') && !list.includes(`file://${f}`)).length
  return { files: files.size, cjs, packages: packages.size }
}

runBenchmark(async () => {
  const opts = flags({ runs: { type: 'string' } }, USAGE)
  const runs = parsePositive('--runs', opts.runs as string | undefined, 7, true)
  console.log(`import cost, ${runs} fresh processes per case, ${machine()}`)

  const samples = new Map<string, Sample[]>(CASES.map(c => [c.name, []]))
  // interleaved, so a noisy moment on the machine hits every case alike
  for (let i = 0; i < runs; i++) {
    for (const c of CASES) { samples.get(c.name)?.push(await sample(c.specifiers)) }
  }
  const counts: Array<Awaited<ReturnType<typeof modules>>> = []
  for (const c of CASES) { counts.push(await modules(c.specifiers)) }

  const base = samples.get(CASES[0].name) ?? []
  const baseImport = median(base.map(s => s.importMs))
  const baseRss = median(base.map(s => s.rssMiB))
  const baseCpu = median(base.map(s => s.cpuMs))
  const rows = CASES.map((c, i) => {
    const s = samples.get(c.name) ?? []
    const imp = median(s.map(x => x.importMs))
    const rss = median(s.map(x => x.rssMiB))
    return [
      c.name,
      `${fmt(imp)} ±${fmt(spread(s.map(x => x.importMs)))}`,
      fmt(median(s.map(x => x.sinceStartMs))),
      fmt(median(s.map(x => x.cpuMs))),
      fmt(rss, 1),
      `×${fmt(imp / baseImport, 2)}`,
      `×${fmt(median(s.map(x => x.cpuMs)) / baseCpu, 2)}`,
      `×${fmt(rss / baseRss, 2)}`,
      String(counts[i].files),
      String(counts[i].cjs),
      String(counts[i].packages)
    ]
  })
  console.log(table(['case', 'import ms ±spread%', 'since start ms', 'CPU ms', 'RSS MiB', 'import vs plain', 'CPU vs plain', 'RSS vs plain', 'modules', 'CJS (require)', 'packages'], rows))
})
