import { spawn } from 'node:child_process'
import { findRunningNode } from '../../control/client.js'
import { CliError, EXIT, UsageError, err, out, parse, resolveDataDir, commonOptions } from '../command.js'
import type { Command } from '../command.js'

const usage = `usage: decloud dashboard [--print] [--data-dir DIR]

Opens the running node's web dashboard in a browser, logged in by a new
one-time link (it works once, for 10 minutes, and only from this machine:
the dashboard listens on 127.0.0.1). Where no browser can be opened, or with
--print, prints the link instead.

options:
  --print         print the link, do not open a browser
  --data-dir DIR  data dir (default $DECLOUD_DATA_DIR or ~/.decloud)

exit codes: 0 opened or printed · 1 no node is running · 2 bad command line
`

/** The system's way to open a URL, when it has one */
function opener (): string | undefined {
  if (process.platform === 'darwin') { return 'open' }
  if (process.platform === 'win32') { return undefined }
  // a desktop session: xdg-open; a server (no DISPLAY) has no browser to open
  return process.env.DISPLAY != null || process.env.WAYLAND_DISPLAY != null ? 'xdg-open' : undefined
}

async function open (cmd: string, url: string): Promise<boolean> {
  return new Promise(resolve => {
    try {
      const child = spawn(cmd, [url], { stdio: 'ignore', detached: true })
      child.once('error', () => { resolve(false) })
      child.once('spawn', () => { child.unref(); resolve(true) })
    } catch {
      resolve(false)
    }
  })
}

export const command: Command = {
  name: 'dashboard',
  summary: 'open the running node\'s web dashboard (prints the link where no browser can be opened)',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      ...commonOptions('data-dir'),
      print: { type: 'boolean', default: false }
    })
    if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}"`) }
    const dataDir = resolveDataDir(values['data-dir'])
    const running = await findRunningNode(dataDir).catch(() => undefined)
    if (running == null) { throw new CliError(`no node is running for ${dataDir}: start one (decloud node --data-dir ${dataDir}); the dashboard is part of it`) }
    const { url } = await running.client.dashboardLogin()
    const cmd = values.print === true ? undefined : opener()
    if (cmd != null && await open(cmd, url)) {
      await err(`opened ${url.replace(/\?.*$/, '')} in a browser`)
      return EXIT.OK
    }
    await out(url + '\n')
    return EXIT.OK
  }
}
