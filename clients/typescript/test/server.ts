// A real `hundredx serve` for the tests: its own data directory and a fixed port (a restart
// keeps the URL). HX_BIN names the binary (the workspace's debug build by default).
import { ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../../../..");

async function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

export class Server {
  readonly bin = process.env.HX_BIN ?? join(ROOT, "target", "debug", "hundredx");
  readonly dir = mkdtempSync(join(tmpdir(), "hx-ts-"));
  port = 0;
  url = "";
  private proc?: ChildProcess;

  async start(): Promise<void> {
    if (!existsSync(this.bin)) throw new Error(`${this.bin} not found: run \`cargo build\` first (or set HX_BIN)`);
    if (!this.port) {
      this.port = await freePort();
      this.url = `http://127.0.0.1:${this.port}`;
    }
    const proc = spawn(this.bin, ["serve", "--data-dir", join(this.dir, "data"), "--listen", `127.0.0.1:${this.port}`,
      "--feed", "synthetic", "--ticks-per-second", "50"], { stdio: ["ignore", "pipe", "ignore"] });
    this.proc = proc;
    const lines = createInterface({ input: proc.stdout! });
    const first: string = await new Promise((ok) => lines.once("line", ok));
    if (!first.includes("listening on http://")) throw new Error(`serve did not start: ${first}`);
    lines.on("line", () => {});
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.proc = undefined;
    const ended = new Promise((ok) => p.once("exit", ok));
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
    await ended;
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    await this.stop();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        return await this.start();
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200)); // the port is released a moment later
      }
    }
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
