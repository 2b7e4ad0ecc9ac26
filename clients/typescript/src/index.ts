export { Client, type ClientOptions } from "./client.js";
export { ApiError, type ApiKey, type Balance, type BatchResult, type Market, type Order, type Position, type Session } from "./models.js";
export { message, Signer, DEFAULT_WINDOW_MS } from "./signing.js";
export { PushStream, type Message, type Resync, type StreamEvent } from "./stream.js";
