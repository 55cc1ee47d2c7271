/**
 * `decloud <command> [options]`: finds `commands/<command>.js`, runs it and
 * exits with its code. Commands are discovered from that folder, so adding a
 * file there adds a command.
 */
import '../polyfill.js'
import { readdirSync } from 'node:fs'
import { NotFoundError } from '@libp2p/interface'
import { decloudVersion } from '../control/version.js'
import { CliError, EXIT, err, out } from './command.js'
import type { Command } from './command.js'

const COMMANDS_DIR = new URL('./commands/', import.meta.url)
const NAME = /^[a-z][a-z0-9-]*$/

/** Names of the commands installed, sorted */
export function commandNames (): string[] {
  let files: string[]
  try {
    files = readdirSync(COMMANDS_DIR)
  } catch {
    return []
  }
  return files
    .filter(f => f.endsWith('.js'))
    .map(f => f.slice(0, -3))
    .filter(n => NAME.test(n))
    .sort()
}

/** Loads a command by name; undefined when there is none */
export async function loadCommand (name: string): Promise<Command | undefined> {
  if (!NAME.test(name) || !commandNames().includes(name)) { return undefined }
  const mod = await import(new URL(`${name}.js`, COMMANDS_DIR).href)
  const command = mod.command as Command | undefined
  if (command == null || typeof command.run !== 'function') {
    throw new NotFoundError(`commands/${name}.js does not export a command`)
  }
  return command
}

async function overview (): Promise<string> {
  const lines = [
    'usage: decloud <command> [options]',
    '',
    'commands:'
  ]
  const commands: Array<[string, string]> = []
  for (const name of commandNames()) {
    try {
      const c = await loadCommand(name)
      if (c != null) { commands.push([name, c.summary]) }
    } catch (e: any) {
      commands.push([name, `(cannot load: ${e.message})`])
    }
  }
  commands.push(['help', 'show this list, or a command\'s options: decloud help <command>'])
  const width = Math.max(...commands.map(([n]) => n.length))
  for (const [n, s] of commands) { lines.push(`  ${n.padEnd(width)}  ${s}`) }
  lines.push('', 'Every command takes --help. Data dir: --data-dir DIR, else $DECLOUD_DATA_DIR, else ~/.decloud.')
  return lines.join('\n') + '\n'
}

/** True when argv asks for help (before a `--`) */
function wantsHelp (argv: string[]): boolean {
  for (const a of argv) {
    if (a === '--') { return false }
    if (a === '--help' || a === '-h') { return true }
  }
  return false
}

/** Runs the CLI; resolves with the exit code */
export async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name == null) {
    await err(await overview())
    return EXIT.USAGE
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    if (rest[0] != null) {
      const c = await loadCommand(rest[0])
      if (c == null) {
        await err(`decloud: unknown command "${rest[0]}"\n\n${await overview()}`)
        return EXIT.USAGE
      }
      await out(c.usage.endsWith('\n') ? c.usage : c.usage + '\n')
      return EXIT.OK
    }
    await out(await overview())
    return EXIT.OK
  }
  if (name === '--version' || name === 'version' || name === '-v') {
    await out(`decloud ${decloudVersion()}\n`)
    return EXIT.OK
  }
  const command = await loadCommand(name)
  if (command == null) {
    await err(`decloud: unknown command "${name}"\n\n${await overview()}`)
    return EXIT.USAGE
  }
  if (wantsHelp(rest)) {
    await out(command.usage.endsWith('\n') ? command.usage : command.usage + '\n')
    return EXIT.OK
  }
  return command.run(rest)
}

/** What the user sees for an error: one line, a stack only with DECLOUD_DEBUG=1 */
export function describeError (e: unknown): { message: string, code: number } {
  const debug = process.env.DECLOUD_DEBUG === '1'
  if (e instanceof CliError) {
    return { message: debug && e.stack != null ? e.stack : e.message, code: e.exitCode }
  }
  const error = e as Error | undefined
  const message = debug && error?.stack != null ? error.stack : String(error?.message ?? e)
  return { message, code: EXIT.FAILURE }
}

/** Entry point used by bin/decloud.js: runs, flushes output and exits */
export async function run (argv: string[] = process.argv.slice(2)): Promise<never> {
  // a closed pipe (`decloud call … | head`) is not an error worth a stack
  process.stdout.on('error', (e: any) => { if (e.code === 'EPIPE') { process.exit(EXIT.OK) } })
  let code: number
  try {
    code = await main(argv)
  } catch (e) {
    const d = describeError(e)
    code = d.code
    await err(`decloud: ${d.message}`).catch(() => {})
  }
  // libp2p and LevelDB may leave timers behind; the command is done
  process.exit(code)
}
