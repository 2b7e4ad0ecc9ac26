// Request signing (docs/API.md, "Signed requests"): Ed25519 over
// METHOD\nPATH\nSORTED_QUERY\nTIMESTAMP\nWINDOW\nBODY, with Node's own crypto.
import { createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, sign } from "node:crypto";

export const DEFAULT_WINDOW_MS = 5_000;

/** The bytes a request signs: the query's `name=value` pairs exactly as sent, sorted bytewise. */
export function message(method: string, path: string, query: string, timestampMs: number, windowMs: number, body: Uint8Array): Buffer {
  const pairs = query ? query.split("&").filter((p) => p).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))) : [];
  const head = `${method.toUpperCase()}\n${path}\n${pairs.join("&")}\n${timestampMs}\n${windowMs}\n`;
  return Buffer.concat([Buffer.from(head), Buffer.from(body)]);
}

// PKCS#8 DER of an Ed25519 private key is this prefix then the 32-byte seed (RFC 8410).
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** An API key: the private key stays here; the server knows only the public key. */
export class Signer {
  constructor(readonly privateKey: KeyObject, readonly windowMs = DEFAULT_WINDOW_MS) {}

  static generate(): Signer {
    return new Signer(generateKeyPairSync("ed25519").privateKey);
  }

  static fromSeed(seed: Uint8Array): Signer {
    if (seed.length !== 32) throw new Error("an Ed25519 seed is 32 bytes");
    return new Signer(createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, Buffer.from(seed)]), format: "der", type: "pkcs8" }));
  }

  /** Base64 of the 32-byte public key (what the server registers). */
  get publicKey(): string {
    const der = createPublicKey(this.privateKey).export({ format: "der", type: "spki" });
    return der.subarray(der.length - 32).toString("base64");
  }

  headers(method: string, path: string, query: string, body: Uint8Array, nowMs = Date.now()): Record<string, string> {
    const sig = sign(null, message(method, path, query, nowMs, this.windowMs, body), this.privateKey);
    return {
      "X-API-Key": this.publicKey,
      "X-Timestamp": String(nowMs),
      "X-Window": String(this.windowMs),
      "X-Signature": sig.toString("base64"),
    };
  }

  /** The push connection's signed `auth` frame. */
  wsAuth(nowMs = Date.now()): Record<string, unknown> {
    const sig = sign(null, message("AUTH", "/api/v1/ws", "", nowMs, this.windowMs, new Uint8Array()), this.privateKey);
    return { op: "auth", api_key: this.publicKey, timestamp: nowMs, window: this.windowMs, signature: sig.toString("base64") };
  }
}
