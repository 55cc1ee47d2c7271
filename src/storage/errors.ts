/** A put that would take the store past its capacity */
export class InsufficientStorageError extends Error {
  static override name = 'InsufficientStorageError'
  override name = 'InsufficientStorageError'
}

/**
 * A stored piece whose bytes no longer hash to its id (or that is shorter,
 * longer or gone while its metadata remains). The store has dropped it and
 * uncounted it by the time this is thrown: it is never served.
 */
export class PieceDamagedError extends Error {
  static override name = 'PieceDamagedError'
  override name = 'PieceDamagedError'
  readonly id: string

  constructor (id: string, message: string) {
    super(message)
    this.id = id
  }
}
