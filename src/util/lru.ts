/** A map that forgets its least recently used entry beyond `max` */
export class Lru<V> {
  private readonly map = new Map<string, V>()
  constructor (private readonly max: number) {}

  get (key: string): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }

  set (key: string, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.max) { this.map.delete(this.map.keys().next().value as string) }
  }
}
