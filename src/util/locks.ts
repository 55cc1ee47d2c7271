/**
 * Runs functions one at a time per key. An entry exists only while some
 * call holds or waits for the key, so the map stays as small as the number
 * of calls in progress.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key)
    let release!: () => void
    const mine = new Promise<void>((resolve) => { release = resolve })
    const tail = prev == null ? mine : prev.then(async () => mine)
    this.tails.set(key, tail)
    try {
      if (prev != null) { await prev }
      return await fn()
    } finally {
      release()
      if (this.tails.get(key) === tail) { this.tails.delete(key) }
    }
  }

  /** keys held or waited for */
  get size (): number {
    return this.tails.size
  }
}

/** Runs functions one at a time (a KeyedMutex of one key) */
export class Mutex {
  private readonly keyed = new KeyedMutex()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    return this.keyed.run('', fn)
  }
}
