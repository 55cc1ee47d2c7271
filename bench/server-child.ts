/* eslint-disable no-console */
/**
 * Entry of the benchmark server when it runs in its own process
 * (`--two-process`): starts the server, sends its address to the parent over
 * IPC, stops when told to or when the parent goes away.
 */
import '../src/polyfill.js'
import { startBenchServer } from './server.js'

if (process.send == null) {
  console.error('server-child.js is started by the benchmarks (--two-process), not by hand')
  process.exit(2)
}

const server = await startBenchServer()
let stopping = false

async function stop (): Promise<void> {
  if (stopping) { return }
  stopping = true
  const force = setTimeout(() => { process.exit(1) }, 10_000)
  force.unref()
  try {
    await server.destroy()
  } finally {
    if (process.connected) { process.disconnect() }
  }
}

process.on('message', (m: any) => {
  if (m?.cmd === 'stop') { void stop() }
})
process.on('disconnect', () => { void stop() })
process.send({ addr: server.addr })
