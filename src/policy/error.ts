/** The error every policy check throws */
/** A policy file or object is invalid; the message names the place */
export class PolicyError extends Error {
  static override name = 'PolicyError'
  override name = 'PolicyError'
  readonly file?: string
  readonly line?: number
  readonly column?: number

  constructor (message: string, where: { file?: string, line?: number, column?: number } = {}) {
    super(prefix(where) + message)
    this.file = where.file
    this.line = where.line
    this.column = where.column
  }
}

function prefix (where: { file?: string, line?: number, column?: number }): string {
  if (where.line == null) { return where.file != null ? `${where.file}: ` : '' }
  return `${where.file ?? '<policy>'}:${where.line}:${where.column ?? 1}: `
}
