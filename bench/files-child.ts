/* eslint-disable no-console */
/**
 * A storage seller for `bench/files.ts` in its own process: a decloud node
 * (temp data dir, piece store on disk, storage sold free) that bootstraps
 * from the address in argv[2], sends its own address to the parent over IPC,
 * and stops when told to or when the parent goes away. Reports its CPU time
 * and peak RSS when asked, so the parent can show what the sellers spent.
 */
import '../src/polyfill.js'
import { startBenchNode } from './common.js'

if (process.send == null || process.argv[2] == null) {
  console.error('files-child.js is started by bench/files.ts, not by hand')
  process.exit(2)
}

const seller = await startBenchNode({ bootstrap: [process.argv[2]] })
let stopping = false

async function stop (): Promise<void> {
  if (stopping) { return }
  stopping = true
  const force = setTimeout(() => { process.exit(1) }, 10_000)
  force.unref()
  try {
    await seller.destroy()
  } finally {
    if (process.connected) { process.disconnect() }
  }
}

process.on('message', (m: any) => {
  if (m?.cmd === 'stop') { void stop() }
  if (m?.cmd === 'usage') {
    const c = process.cpuUsage()
    process.send?.({ cpuMs: (c.user + c.system) / 1000, maxRssMiB: process.resourceUsage().maxRSS / 1024 })
  }
})
process.on('disconnect', () => { void stop() })
process.send({ addr: seller.addr })
