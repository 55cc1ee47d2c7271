import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { CliError } from './command.js'

function mib (n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : `${n} bytes`
}

/**
 * Reads a request body from a file, or from stdin for `-`, refusing (before
 * anything is sent) a body over `max` bytes. Never holds more than max + one
 * chunk in memory.
 */
export async function readBody (file: string | undefined, max: number): Promise<Uint8Array> {
  if (file == null) { return new Uint8Array() }
  const tooBig = (size: string): CliError => new CliError(
    `the body (${size}) is larger than the largest body a node accepts (${mib(max)}); split it into pieces of at most ${max} bytes`
  )
  let source: NodeJS.ReadableStream
  if (file === '-') {
    source = process.stdin
  } else {
    let s
    try {
      s = await stat(file)
    } catch (err: any) {
      throw new CliError(`cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
    }
    if (s.isDirectory()) { throw new CliError(`cannot read ${file}: it is a directory`) }
    if (s.isFile() && s.size > max) { throw tooBig(`${s.size} bytes`) }
    source = createReadStream(file)
  }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of source) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      size += b.byteLength
      if (size > max) { throw tooBig(`more than ${max} bytes`) }
      chunks.push(b)
    }
  } catch (err: any) {
    if (err instanceof CliError) { throw err }
    throw new CliError(`cannot read ${file === '-' ? 'stdin' : file}: ${err.message}`)
  } finally {
    if (file === '-') { process.stdin.pause() }
  }
  return Buffer.concat(chunks, size)
}
