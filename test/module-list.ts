/**
 * Preloaded with `node --import <this file>` in a child process: records every
 * module the process loads, ES modules through a resolve hook and CommonJS
 * ones from the require cache, and prints them as JSON lines on stdout at
 * exit. `test/packaging.spec.ts` and `bench/import.ts` read it to see what an
 * entry point drags in.
 */
import { createRequire, register } from 'node:module'
import { MessageChannel } from 'node:worker_threads'

const urls = new Set<string>()
const { port1, port2 } = new MessageChannel()
port1.on('message', (url: string) => urls.add(url))
port1.unref()

// The hooks run on the loader thread; they report each resolved URL back
const hooks = `
let port
export function initialize (data) { port = data.port }
export async function resolve (specifier, context, next) {
  const r = await next(specifier, context)
  port.postMessage(r.url)
  return r
}`
register(`data:text/javascript,${encodeURIComponent(hooks)}`, import.meta.url, { data: { port: port2 }, transferList: [port2] })

const require = createRequire(import.meta.url)

/** every module file loaded so far, as file paths or URLs */
function loaded (): string[] {
  return [...urls, ...Object.keys(require.cache)]
}

process.on('exit', () => {
  // receiving is asynchronous: anything still in flight at exit is missed, so
  // the caller waits a tick before exiting (see `importAndList`)
  process.stdout.write(`${JSON.stringify({ modules: loaded() })}\n`)
})
