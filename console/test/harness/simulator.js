// `chatrelay extension simulate` as a child process: an extension session
// of the account that answers every request it is given (see the README's
// walk-through). The key goes in the environment, not on the command line.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { withTimeout } from "../../../extension/test/harness/wait.js";

export class Simulator {
  // `options`: more flags, e.g. ["--reply", "text", "--exit-after", "1"].
  static async start(server, key, options = []) {
    const child = spawn(server.bin, ["extension", "simulate", "--url", server.wsUrl, ...options], {
      env: { ...process.env, CHATRELAY_API_KEY: key },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const simulator = new Simulator(child);
    await withTimeout(
      "the simulated extension to connect",
      new Promise((resolve, reject) => {
        child.stdout.on("data", () => simulator.output.includes("connected to") && resolve());
        child.once("exit", (code) => reject(new Error(`simulate exited (${code}): ${simulator.output}`)));
      }),
    );
    return simulator;
  }

  constructor(child) {
    this.child = child;
    this.output = "";
    child.stdout.on("data", (d) => (this.output += d));
    child.stderr.on("data", (d) => (this.output += d));
    this.exited = once(child, "exit");
  }

  // Resolves when it has answered its --exit-after requests and left.
  finished() {
    return withTimeout("the simulated extension to finish", this.exited);
  }

  // Leaves (SIGKILL: the socket drops as when a browser closes).
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }
}
