/**
 * A process that puts and deletes pieces until it is killed: the kill -9
 * test in pieces.spec.ts runs it. It prints `begin put|del <id>` before an
 * operation and `done put|del <id>` once it resolved (pipes are written
 * synchronously on Linux, so a printed line was acknowledged before the kill).
 */
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { join } from 'node:path'
import { DiskPieceStore } from '../src/storage/index.js'
import { Store } from '../src/store/index.js'

const dir = process.argv[2]
const store = new Store(join(dir, 'db'))
await store.open()
const pieces = new DiskPieceStore({ dir: join(dir, 'pieces'), db: store.sub('pieces'), capacity: 1024 * 1024 * 1024 })
await pieces.open()
const held: string[] = []
for await (const id of pieces.ids()) { held.push(id) }
process.stdout.write('ready\n')
for (;;) {
  if (held.length > 0 && randomInt(3) === 0) {
    const id = held.splice(randomInt(held.length), 1)[0]
    process.stdout.write(`begin del ${id}\n`)
    await pieces.delete(id)
    process.stdout.write(`done del ${id}\n`)
  } else {
    const bytes = randomBytes(randomInt(1, 1024 * 1024))
    const id = createHash('sha256').update(bytes).digest('hex')
    process.stdout.write(`begin put ${id}\n`)
    await pieces.put(id, bytes)
    held.push(id)
    process.stdout.write(`done put ${id}\n`)
  }
}
