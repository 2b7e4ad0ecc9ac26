// The push stream (docs/API.md, "Live push"): one WebSocket that signs in (token or API key),
// subscribes, and after any drop reconnects with backoff, signs in and subscribes again.
// Messages carry a `seq` per channel per connection: a gap, or a reconnect (which may have
// missed messages), yields a Resync so the caller re-reads state over REST.
import WebSocket from "ws";
import { Signer } from "./signing.js";

export interface Message { kind: "message"; channel: string; seq: number; data: any }
export interface Resync { kind: "resync"; channels: string[]; reason: string }
export type StreamEvent = Message | Resync;

export class PushStream implements AsyncIterable<StreamEvent> {
  readonly url: string;
  reconnects = 0;
  private closed = false;
  private ws?: WebSocket;
  private everOpened = false;
  private queue: StreamEvent[] = [];
  private wake?: () => void;

  constructor(baseUrl: string, readonly channels: string[], readonly auth: { token?: string; signer?: Signer } = {}, readonly backoffMaxMs = 5_000) {
    this.url = `${baseUrl.replace(/^http/, "ws").replace(/\/$/, "")}/api/v1/ws`;
  }

  close(): void {
    this.closed = true;
    this.ws?.close();
    this.wake?.();
  }

  private push(e: StreamEvent): void {
    this.queue.push(e);
    this.wake?.();
  }

  /** One connection's life: resolves when it ends (for any reason). */
  private connectOnce(): Promise<void> {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const seen = new Map<string, number>();
      ws.on("open", () => {
        const signIn = this.auth.signer ? this.auth.signer.wsAuth() : this.auth.token ? { op: "auth", token: this.auth.token } : undefined;
        if (signIn) ws.send(JSON.stringify(signIn));
        ws.send(JSON.stringify({ op: "subscribe", channels: this.channels }));
        if (this.everOpened) {
          this.reconnects += 1;
          this.push({ kind: "resync", channels: [...this.channels], reason: "reconnected" });
        }
        this.everOpened = true;
      });
      ws.on("message", (raw) => {
        const m = JSON.parse(raw.toString());
        if (typeof m.channel !== "string") return; // an op answer
        const last = seen.get(m.channel);
        if (last !== undefined && m.seq !== last + 1) this.push({ kind: "resync", channels: [m.channel], reason: `gap: ${last} then ${m.seq}` });
        seen.set(m.channel, m.seq);
        this.push({ kind: "message", channel: m.channel, seq: m.seq, data: m.data ?? {} });
      });
      ws.on("error", () => {});
      ws.on("close", () => resolve());
    });
  }

  private async run(): Promise<void> {
    let delay = 100;
    while (!this.closed) {
      const started = Date.now();
      await this.connectOnce();
      if (this.closed) break;
      // A connection that lived a while earned a fresh backoff.
      if (Date.now() - started > 2_000) delay = 100;
      await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
      delay = Math.min(delay * 2, this.backoffMaxMs);
    }
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    void this.run();
    while (true) {
      while (this.queue.length) yield this.queue.shift()!;
      if (this.closed) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}
