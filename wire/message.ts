// Jupyter wire format: the multipart frames of one message, signed with HMAC as the
// messaging spec (protocol 5.3) describes. Used by the notebook kernel, the worker kernel
// and the client that talks to workers, so all three sign and check the same way.
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

export const PROTOCOL_VERSION = "5.3";
const DELIMITER = "<IDS|MSG>";

export interface MessageHeader {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  /** Set on messages that carry a subshell id (not used by nbjob, kept when present). */
  [extra: string]: unknown;
}

export interface JupyterMessage<Content = Record<string, unknown>> {
  /** ZeroMQ routing identities that preceded the delimiter (ROUTER sockets only). */
  identities: Buffer[];
  header: MessageHeader;
  /** Empty object when the message answers nothing. */
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: Content;
  buffers: Buffer[];
}

/** Raised when a message cannot be used; the caller logs it and drops the message. */
export class WireError extends Error {
  constructor(message: string, readonly reason: "bad-signature" | "malformed") {
    super(message);
    this.name = "WireError";
  }
}

/**
 * Signs and checks messages with the connection file's key. An empty key disables signing,
 * as the spec says: signatures are then sent empty and not checked.
 */
export class Signer {
  private readonly key: Buffer;

  constructor(key: string, scheme = "hmac-sha256") {
    if (key !== "" && scheme !== "hmac-sha256") {
      throw new Error(`signature_scheme "${scheme}" is not supported; use "hmac-sha256" in the connection file`);
    }
    this.key = Buffer.from(key, "utf8");
  }

  get enabled(): boolean {
    return this.key.length > 0;
  }

  sign(parts: readonly Buffer[]): string {
    if (!this.enabled) return "";
    const hmac = createHmac("sha256", this.key);
    for (const part of parts) hmac.update(part);
    return hmac.digest("hex");
  }

  /** Constant-time comparison, so the time taken leaks nothing about the expected digest. */
  verify(signature: string, parts: readonly Buffer[]): boolean {
    if (!this.enabled) return true;
    const expected = Buffer.from(this.sign(parts), "utf8");
    const given = Buffer.from(signature, "utf8");
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

export function newHeader(msgType: string, session: string, username = "nbjob"): MessageHeader {
  return {
    msg_id: randomUUID(),
    session,
    username,
    date: new Date().toISOString(),
    msg_type: msgType,
    version: PROTOCOL_VERSION,
  };
}

/** Builds a message that answers (or is caused by) `parent`, on the same routing identities. */
export function replyTo<C>(
  parent: JupyterMessage<unknown>,
  msgType: string,
  content: C,
  session: string,
  metadata: Record<string, unknown> = {},
): JupyterMessage<C> {
  return {
    identities: parent.identities,
    header: newHeader(msgType, session, parent.header.username),
    parent_header: parent.header,
    metadata,
    content,
    buffers: [],
  };
}

export function encodeMessage(msg: JupyterMessage<unknown>, signer: Signer): Buffer[] {
  const parts = [
    Buffer.from(JSON.stringify(msg.header)),
    Buffer.from(JSON.stringify(msg.parent_header ?? {})),
    Buffer.from(JSON.stringify(msg.metadata ?? {})),
    Buffer.from(JSON.stringify(msg.content ?? {})),
  ];
  return [...msg.identities, Buffer.from(DELIMITER), Buffer.from(signer.sign(parts)), ...parts, ...msg.buffers];
}

export function decodeMessage(frames: readonly Buffer[], signer: Signer): JupyterMessage {
  const delimiterAt = frames.findIndex((f) => f.length === DELIMITER.length && f.toString() === DELIMITER);
  if (delimiterAt < 0) throw new WireError("message has no <IDS|MSG> delimiter", "malformed");
  if (frames.length < delimiterAt + 6) throw new WireError("message has fewer than the 6 frames after the delimiter", "malformed");
  const signature = frames[delimiterAt + 1].toString();
  const parts = frames.slice(delimiterAt + 2, delimiterAt + 6);
  if (!signer.verify(signature, parts)) {
    throw new WireError(signature ? "message signature does not match" : "message is not signed", "bad-signature");
  }
  let header: MessageHeader, parent: Partial<MessageHeader>, metadata: Record<string, unknown>, content: Record<string, unknown>;
  try {
    [header, parent, metadata, content] = parts.map((p) => JSON.parse(p.toString("utf8")));
  } catch (err) {
    throw new WireError(`message frame is not JSON: ${(err as Error).message}`, "malformed");
  }
  if (!header || typeof header.msg_type !== "string" || typeof header.msg_id !== "string") {
    throw new WireError("message header lacks msg_type or msg_id", "malformed");
  }
  return {
    identities: frames.slice(0, delimiterAt).map((f) => Buffer.from(f)),
    header,
    parent_header: parent ?? {},
    metadata: metadata ?? {},
    content: content ?? {},
    buffers: frames.slice(delimiterAt + 6).map((f) => Buffer.from(f)),
  };
}
