import { statusPath } from './status.js'
import type { Response, Status } from '../pb/opencloud.js'

/** A call ended with a status other than ok */
export class OpenCloudStatusError extends Error {
  static override name = 'OpenCloudStatusError'
  override name = 'OpenCloudStatusError'
  readonly response: Response
  readonly status: Status
  readonly path: string

  constructor (response: Response) {
    super(`${statusPath(response.status)}${response.detail !== '' ? `: ${response.detail}` : ''}`)
    this.response = response
    this.status = response.status
    this.path = statusPath(response.status)
  }
}

/** The peer sent something that is not valid OpenCloud */
export class ProtocolViolationError extends Error {
  static override name = 'ProtocolViolationError'
  override name = 'ProtocolViolationError'
}

/** A response's signature did not verify against the peer's key */
export class InvalidResponseSignatureError extends Error {
  static override name = 'InvalidResponseSignatureError'
  override name = 'InvalidResponseSignatureError'
}

/** A service or method definition is not valid */
export class InvalidServiceError extends Error {
  static override name = 'InvalidServiceError'
  override name = 'InvalidServiceError'
}

/** A frame's length prefix announced more than the frame size limit (nothing of it was read) */
export class FrameTooLargeError extends Error {
  static override name = 'FrameTooLargeError'
  override name = 'FrameTooLargeError'
  /** the announced length, when the prefix could be decoded */
  readonly length?: number

  constructor (message: string, length?: number) {
    super(message)
    this.length = length
  }
}

/** The stream ended inside a frame */
export class TruncatedFrameError extends Error {
  static override name = 'TruncatedFrameError'
  override name = 'TruncatedFrameError'
}

/** A peer's streams hold more unread bytes than the node allows (the stream is reset) */
export class BufferBudgetExceededError extends Error {
  static override name = 'BufferBudgetExceededError'
  override name = 'BufferBudgetExceededError'
}

/**
 * A pooled stream turned out closed before any byte of the request was
 * written to it: the request was certainly not sent, so it may be sent again
 * on a fresh stream.
 */
export class StreamNotUsableError extends Error {
  static override name = 'StreamNotUsableError'
  override name = 'StreamNotUsableError'
}

/** No stream to the peer became free in time */
export class StreamPoolTimeoutError extends Error {
  static override name = 'StreamPoolTimeoutError'
  override name = 'StreamPoolTimeoutError'
}

/** No frame started within the idle timeout */
export class IdleTimeoutError extends Error {
  static override name = 'IdleTimeoutError'
  override name = 'IdleTimeoutError'
}

/** A frame started but was not complete within the message timeout */
export class FrameTimeoutError extends Error {
  static override name = 'FrameTimeoutError'
  override name = 'FrameTimeoutError'
}
