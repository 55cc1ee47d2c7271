import { readFileSync } from 'node:fs'

let cached: string | undefined

/**
 * The installed decloud version, from the package's package.json (this file
 * runs as dist/src/control/version.js, three levels below the package root).
 */
export function decloudVersion (): string {
  if (cached != null) { return cached }
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'))
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    cached = 'unknown'
  }
  return cached as string
}
