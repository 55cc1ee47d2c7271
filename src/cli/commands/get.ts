import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { isFileId } from '../../files/manifest.js'
import { parseMax } from '../../payments/buyer/pay-option.js'
import { EXIT, UsageError, commonOptions, commonUsage, err, out, parse, readCommon } from '../command.js'
import { filesError, formatBytes, progressBar, runningClient } from '../files.js'
import type { Command } from '../command.js'

const usage = `usage: decloud get ID [options]

Fetches a file stored with decloud put through the running node: for each
segment the node asks the most reliable sellers for K pieces (a few more when
they are slow), checks each piece against its hash, rebuilds the segment,
authenticates and decrypts it. The bytes are identical to what was put.

options:
  --out F, -o F          write to F (default: the name it was stored under in the
                         current directory, else the id); - writes to stdout
  --max-price SATS       the most paid or promised for one piece (default 1000)
${commonUsage('json', 'data-dir')}
                         --json prints {id, size, out} on stdout (not with --out -)

exit codes: 0 fetched · 1 failed (no such file, too few pieces) · 2 bad command
            line · 3 the node did not answer

examples:
  decloud get 3f2a…e9 --out photo.jpg
  decloud get 3f2a…e9 -o - | tar x
`

export const command: Command = {
  name: 'get',
  summary: 'fetch a file stored with decloud put: decloud get ID [--out F|-]',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      out: { type: 'string', short: 'o' },
      'max-price': { type: 'string' },
      ...commonOptions('json', 'data-dir')
    })
    if (positionals.length !== 1) { throw new UsageError('usage: decloud get ID (see decloud get --help)') }
    const id = positionals[0]
    if (!isFileId(id)) { throw new UsageError(`"${id}" is not a file id (32 hex characters, as decloud put printed)`) }
    const { dataDir, json } = readCommon(values)
    if (json && values.out === '-') { throw new UsageError('--json prints on stdout: give --out FILE with it') }
    let maxPrice: bigint | undefined
    if (values['max-price'] != null) {
      try {
        maxPrice = parseMax(values['max-price'])
      } catch (e: any) {
        throw new UsageError(`--max-price: ${String(e.message)}`)
      }
    }
    const client = await runningClient(dataDir)
    let target = values.out
    if (target == null) {
      const known = (await client.files().catch(e => { throw filesError(e, dataDir) })).files.find(f => f.id === id)
      const name = known?.name
      target = name != null && /^[^/\\]+$/.test(name) && name !== '.' && name !== '..' ? name : id
    }
    const bar = progressBar('get')
    if (target === '-') {
      try {
        await client.getFile(id, process.stdout, { onReceived: (b, t) => { bar.update(b, t) }, ...(maxPrice != null ? { maxPrice } : {}) })
      } catch (e: any) {
        throw filesError(e, dataDir)
      } finally {
        bar.stop()
      }
      return EXIT.OK
    }
    // written beside the target and renamed when complete: a failed get leaves no half file
    const tmp = `${target}.decloud-partial`
    const sink = createWriteStream(tmp, { flags: 'wx' })
    let size: number
    try {
      await new Promise<void>((resolve, reject) => { sink.once('open', () => { resolve() }); sink.once('error', reject) })
      size = (await client.getFile(id, sink, { onReceived: (b, t) => { bar.update(b, t) }, ...(maxPrice != null ? { maxPrice } : {}) })).size
      await new Promise<void>((resolve, reject) => { sink.end((e?: Error | null) => { e != null ? reject(e) : resolve() }) })
      await rename(tmp, target)
    } catch (e: any) {
      sink.destroy()
      await rm(tmp, { force: true })
      if (e?.code === 'EEXIST') { throw new UsageError(`${tmp} exists: another get is writing it, or remove it`) }
      throw filesError(e, dataDir)
    } finally {
      bar.stop()
    }
    if (json) {
      await out(JSON.stringify({ id, size, out: target }, null, 2) + '\n')
    } else {
      await err(`decloud: wrote ${formatBytes(size)} to ${target}`)
    }
    return EXIT.OK
  }
}
