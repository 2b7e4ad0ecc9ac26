// The HTTP client (fetch): a session token or an API key (`signer`), which signs the exact bytes
// sent (docs/API.md, "Signed requests"). JavaScript's I/O is asynchronous: every method is.
import { ApiError, ApiKey, Balance, BatchResult, Market, Order, Position, Session } from "./models.js";
import { Signer } from "./signing.js";

export interface ClientOptions { token?: string; signer?: Signer; timeoutMs?: number }

export class Client {
  readonly baseUrl: string;
  token?: string;
  signer?: Signer;
  timeoutMs: number;

  constructor(baseUrl: string, opts: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.token = opts.token;
    this.signer = opts.signer;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  async request<T = any>(method: string, path: string, opts: { params?: Record<string, string | undefined>; body?: unknown; idempotencyKey?: string } = {}): Promise<T> {
    const params = Object.entries(opts.params ?? {}).filter(([, v]) => v !== undefined) as [string, string][];
    const query = new URLSearchParams(params).toString();
    const data = opts.body === undefined ? new Uint8Array() : Buffer.from(JSON.stringify(opts.body));
    const headers: Record<string, string> = {};
    if (data.length) headers["content-type"] = "application/json";
    if (opts.idempotencyKey) headers["Idempotency-Key"] = opts.idempotencyKey;
    if (this.signer) Object.assign(headers, this.signer.headers(method, path, query, data));
    else if (this.token) headers.authorization = `Bearer ${this.token}`;
    const r = await fetch(`${this.baseUrl}${path}${query ? `?${query}` : ""}`, {
      method, headers, body: data.length ? data : undefined, signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await r.text();
    const body = text && (r.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : text;
    if (!r.ok) {
      const retry = Number(r.headers.get("retry-after"));
      throw new ApiError(r.status, body?.error?.code ?? "http_error", body?.error?.message ?? String(text), Number.isFinite(retry) && retry > 0 ? retry : undefined);
    }
    return body as T;
  }

  async signup(email: string, password: string): Promise<void> {
    await this.request("POST", "/api/v1/user/signup", { body: { email, password } });
  }

  async signin(email: string, password: string, totp?: string): Promise<Session> {
    const s = await this.request<Session>("POST", "/api/v1/user/signin", { body: { email, password, ...(totp ? { totp } : {}) } });
    this.token = s.token;
    return s;
  }

  balance(): Promise<Balance> { return this.request("GET", "/api/v1/user/balance"); }
  async markets(): Promise<Market[]> { return (await this.request("GET", "/api/v1/markets")).markets; }

  createApiKey(label: string, publicKey: string, scopes: string[], totp?: string): Promise<ApiKey> {
    return this.request("POST", "/api/v1/user/api-keys", { body: { label, public_key: publicKey, scopes, ...(totp ? { totp } : {}) } });
  }

  openPosition(p: { market: string; side: "long" | "short"; leverage: number; margin?: string; quantity?: string; client_order_id?: string; take_profit?: string; stop_loss?: string }): Promise<Position> {
    return this.request("POST", "/api/v1/positions", { body: p });
  }

  closePosition(id: string, idempotencyKey?: string): Promise<Position> {
    return this.request("POST", `/api/v1/positions/${id}/close`, { idempotencyKey });
  }

  async positions(status: "open" | "closed" = "open"): Promise<Position[]> {
    return (await this.request("GET", "/api/v1/positions", { params: { status } })).positions;
  }

  placeOrder(o: Record<string, unknown>): Promise<Order> { return this.request("POST", "/api/v1/orders", { body: o }); }
  async orders(): Promise<Order[]> { return (await this.request("GET", "/api/v1/orders")).orders; }
  async batch(orders: Record<string, unknown>[]): Promise<BatchResult[]> {
    return (await this.request("POST", "/api/v1/orders/batch", { body: { orders } })).results;
  }
  async cancelAll(market?: string): Promise<Order[]> {
    return (await this.request("DELETE", "/api/v1/orders", { params: { market } })).cancelled;
  }
  closeAll(market?: string): Promise<{ closed: Position[]; failed: number; first_failure?: string }> {
    return this.request("POST", "/api/v1/positions/close-all", { body: market ? { market } : {} });
  }
  async cancelAfter(afterMs: number | null): Promise<number | null> {
    return (await this.request("POST", "/api/v1/orders/cancel-after", { body: { after_ms: afterMs } })).cancel_at;
  }
}
