// Typed answers. Decimals stay strings: exact, as the API sends them.

/** An error answer: HTTP status, stable code (docs/DESIGN.md, "Reason codes"), message. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly retryAfter?: number) {
    super(`${status} ${code}: ${message}`);
  }
}

export interface Balance { available: string; locked_margin: string; order_margin: string; equity: string; unrealized_pnl: string }
export interface Position {
  id: string; market: string; side: "long" | "short"; status: "open" | "closed"; quantity: string;
  entry_price: string; margin: string; leverage: number; liquidation_price?: string | null;
}
export interface Order { id: string; market: string; side: "long" | "short"; type: "limit" | "stop"; price: string; reserved: string }
export interface ApiKey { id: string; label: string; scopes: string[] }
export interface Session { token: string; user_id: string; expires_at: number; session_id: string }
export interface Market { symbol: string; bid?: string | null; ask?: string | null }
export interface BatchResult { status: number; order?: Order; error?: { code: string; message: string } }
