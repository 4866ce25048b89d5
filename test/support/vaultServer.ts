// A throwaway `vault server -dev -dev-tls` on a free loopback port, for the
// "real Vault" and rehearsal test tiers (DESIGN.md, "Testing, three tiers").
//
// Plain `-dev` serves HTTP only, and cert auth needs TLS on the listener, so the
// server always runs with `-dev-tls`; the CA that verifies its listener is
// written by Vault into our temp directory as `vault-ca.pem`.
//
// Nothing here is meant for production: the server is in-memory, unsealed, on
// 127.0.0.1 only, and lives for one test run.
import { ChildProcess, execFile, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as https from "https";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { runBuildScript } from "./buildScript";

export interface VaultServer {
    /** `https://127.0.0.1:<port>` */
    address: string;
    /** The dev-TLS CA (PEM file) that verifies the listener's certificate. */
    caCertFile: string;
    /** Random root token of this server. */
    token: string;
    /** Temp directory holding the TLS files and `vault.log`; removed by `stop()`. */
    dir: string;
    pid: number;
    vaultBin: string;
    /** e.g. "1.21.0", from `vault version`. */
    version: string;
    /** SIGTERM, then SIGKILL after 5 s; removes `dir`. Safe to call more than once. */
    stop(): Promise<void>;
}

export interface StartVaultServerOptions {
    /** Binary to run; otherwise $VAULT_BIN, otherwise `scripts/get-vault.sh`. */
    vaultBin?: string;
    /** Progress messages (never the token nor the server's own output). */
    log?: (line: string) => void;
    /** How long to wait for a healthy server; default 30 s. */
    readyTimeoutMs?: number;
}

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const GET_VAULT = path.join(REPO_ROOT, "scripts", "get-vault.sh");
const LOG_FILE = "vault.log";
const CA_FILE = "vault-ca.pem";

// ---------------------------------------------------------------------------
// A tiny HTTPS helper (the program's own providers/vaultClient.ts is under test
// elsewhere; the test harness must not depend on it).

export interface HttpsRequestOptions {
    /** Base address, e.g. https://127.0.0.1:8200 */
    address: string;
    /** CA bundle (PEM text) that verifies the server. */
    ca: string;
    method: string;
    /** Path including the leading slash, e.g. /v1/sys/health */
    path: string;
    headers?: Record<string, string>;
    body?: string;
    /** Client certificate and key for mTLS (cert auth login). */
    cert?: string;
    key?: string;
    timeoutMs?: number;
}

export interface HttpsResponse {
    status: number;
    headers: Record<string, string | string[] | undefined>;
    text: string;
}

export function httpsRequest(opts: HttpsRequestOptions): Promise<HttpsResponse> {
    const url = new URL(opts.path, opts.address);
    return new Promise((resolve, reject) => {
        const req = https.request(
            url,
            {
                method: opts.method,
                ca: opts.ca,
                cert: opts.cert,
                key: opts.key,
                headers: {
                    ...(opts.body !== undefined ? { "Content-Type": "application/json" } : {}),
                    ...opts.headers,
                },
                // Node >= 19's global agent keeps sockets alive; a private
                // non-keep-alive agent per request leaves no open handles
                // behind for Jest and no idle connections into a server
                // that is being stopped.
                agent: false,
                timeout: opts.timeoutMs ?? 10_000,
            },
            (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (c: Buffer) => chunks.push(c));
                res.on("error", reject);
                res.on("end", () =>
                    resolve({
                        status: res.statusCode ?? 0,
                        headers: res.headers,
                        text: Buffer.concat(chunks).toString("utf8"),
                    }),
                );
            },
        );
        req.on("timeout", () => req.destroy(new Error(`${opts.method} ${url.pathname}: timed out`)));
        req.on("error", reject);
        if (opts.body !== undefined) req.write(opts.body);
        req.end();
    });
}

// ---------------------------------------------------------------------------
// Cleanup of servers whose owner never called stop(): an interrupted run
// (Ctrl-C, a killed Jest worker, an uncaught error) must not leave a vault
// process or a temp directory with TLS keys behind.

interface Live {
    child: ChildProcess;
    dir: string;
}
const live = new Set<Live>();
let handlersInstalled = false;

function killAllSync(): void {
    for (const s of live) {
        if (s.child.exitCode === null && s.child.signalCode === null) {
            try {
                // Only synchronous work is possible in an `exit` handler, so no
                // graceful SIGTERM wait here.
                s.child.kill("SIGKILL");
            } catch {
                /* already gone */
            }
        }
        fs.rmSync(s.dir, { recursive: true, force: true });
    }
    live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
    killAllSync();
    // Adding a listener replaced Node's default "terminate on signal"; restore
    // it, unless someone else (e.g. Jest) handles the signal themselves.
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    process.removeListener("exit", killAllSync);
    handlersInstalled = false;
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installExitHandlers(): void {
    if (handlersInstalled) return;
    handlersInstalled = true;
    process.once("exit", killAllSync);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
}

// ---------------------------------------------------------------------------

function execFileText(file: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
        execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
            if (err) {
                const detail = String(stderr).trim() || String(stdout).trim() || err.message;
                reject(new Error(`${path.basename(file)} ${args.join(" ")} failed: ${detail}`));
            } else {
                resolve({ stdout: String(stdout), stderr: String(stderr) });
            }
        });
    });
}

async function resolveVaultBin(explicit: string | undefined, log: (l: string) => void): Promise<string> {
    const given = explicit ?? process.env.VAULT_BIN;
    if (given) {
        try {
            fs.accessSync(given, fs.constants.X_OK);
        } catch {
            throw new Error(`vault binary ${given} (from ${explicit ? "vaultBin" : "VAULT_BIN"}) is not executable`);
        }
        return given;
    }
    // get-vault.sh may build Vault from source on first use (many minutes, its
    // progress passed on as it comes); the generous timeout is for that, a cached
    // binary returns at once.
    try {
        return await runBuildScript(GET_VAULT, [], log, 60 * 60 * 1000);
    } catch (e) {
        throw new Error(`cannot obtain a vault binary: ${(e as Error).message}`);
    }
}

async function binaryVersion(bin: string): Promise<string> {
    const { stdout } = await execFileText(bin, ["version"], 30_000);
    const m = /Vault v(\d+\.\d+\.\d+[^\s,]*)/.exec(stdout);
    if (!m) throw new Error(`unexpected \`${bin} version\` output: ${stdout.trim()}`);
    return m[1];
}

function listenOnce(port: number): Promise<net.Server> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen({ host: "127.0.0.1", port, exclusive: true }, () => resolve(srv));
    });
}

function closeServer(srv: net.Server): Promise<void> {
    return new Promise((resolve) => srv.close(() => resolve()));
}

/**
 * A loopback port that is free now and whose successor is free too: dev mode
 * puts the cluster listener on <port>+1 (it only logs an error when that is
 * taken, but a clean log is easier to read when something else fails).
 * There is an unavoidable race between closing and Vault binding; the caller
 * retries on "address already in use".
 */
async function pickFreePort(): Promise<number> {
    for (let attempt = 0; attempt < 20; attempt++) {
        const a = await listenOnce(0);
        const port = (a.address() as net.AddressInfo).port;
        let b: net.Server | undefined;
        try {
            if (port < 65535) b = await listenOnce(port + 1);
        } catch {
            b = undefined;
        }
        await closeServer(a);
        if (b) {
            await closeServer(b);
            return port;
        }
    }
    throw new Error("no free pair of loopback ports found");
}

function redactedTail(file: string, secrets: string[], lines = 25): string {
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch {
        return "(no server log)";
    }
    for (const s of secrets) text = text.split(s).join("<redacted>");
    // Dev mode prints the unseal key and root token in its banner.
    text = text.replace(/^(Unseal Key|Root Token): .*$/gm, "$1: <redacted>");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
}

function sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
}

/** true if `p` settles within `ms`; the timer is cleared so it cannot hold the process (or Jest) open. */
function settlesWithin(p: Promise<void>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), ms);
        void p.then(() => {
            clearTimeout(timer);
            resolve(true);
        });
    });
}

class ServerExited extends Error {
    constructor(
        message: string,
        readonly portInUse: boolean,
    ) {
        super(message);
    }
}

/** Starts a dev-TLS Vault server; the caller must `stop()` it. */
export async function startVaultServer(opts: StartVaultServerOptions = {}): Promise<VaultServer> {
    const log = opts.log ?? (() => undefined);
    const vaultBin = await resolveVaultBin(opts.vaultBin, log);
    const version = await binaryVersion(vaultBin);

    // The API port can be grabbed by someone else between pickFreePort() and
    // Vault's bind; retry with a fresh port and directory in that case.
    for (let attempt = 1; ; attempt++) {
        try {
            return await startOnce(vaultBin, version, opts.readyTimeoutMs ?? 30_000, log);
        } catch (e) {
            if (e instanceof ServerExited && e.portInUse && attempt < 4) {
                log(`port taken before vault bound it; retrying (${attempt})`);
                continue;
            }
            throw e;
        }
    }
}

async function startOnce(
    vaultBin: string,
    version: string,
    readyTimeoutMs: number,
    log: (l: string) => void,
): Promise<VaultServer> {
    const port = await pickFreePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-dev-"));
    const token = crypto.randomBytes(24).toString("base64url");
    const address = `https://127.0.0.1:${port}`;
    const caCertFile = path.join(dir, CA_FILE);
    const logFile = path.join(dir, LOG_FILE);

    // A hermetic environment: no VAULT_* settings from the developer's shell
    // (VAULT_ADDR, VAULT_TOKEN, VAULT_DEV_*, ...) leak into the test server, and
    // HOME is the temp dir because dev mode writes the root token to
    // $HOME/.vault-token (and Vault creates $HOME/.cache); we must not clobber
    // the developer's real token file.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("VAULT_")) env[k] = v;
    env.HOME = dir;
    // The root token goes through the environment, not the command line, so it
    // does not show in `ps`. (Throwaway dev server on loopback, random token.)
    env.VAULT_DEV_ROOT_TOKEN_ID = token;

    const logFd = fs.openSync(logFile, "a", 0o600);
    let child: ChildProcess;
    try {
        child = spawn(
            vaultBin,
            [
                "server",
                "-dev",
                "-dev-tls",
                `-dev-tls-cert-dir=${dir}`,
                `-dev-listen-address=127.0.0.1:${port}`,
            ],
            // The server's output goes to a file (it prints the root token and
            // unseal key in its banner), never to the test output.
            { env, stdio: ["ignore", logFd, logFd] },
        );
    } catch (e) {
        fs.closeSync(logFd);
        fs.rmSync(dir, { recursive: true, force: true });
        throw e;
    }
    fs.closeSync(logFd); // the child has its own copy

    let spawnError: Error | undefined;
    child.once("error", (e) => (spawnError = e));
    const exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once("exit", () => resolve());
    });
    const entry: Live = { child, dir };
    live.add(entry);
    installExitHandlers();

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
        stopping ??= (async () => {
            if (child.exitCode === null && child.signalCode === null && !spawnError) {
                child.kill("SIGTERM");
                if (!(await settlesWithin(exited, 5000))) {
                    log(`vault pid ${child.pid} ignored SIGTERM for 5 s; sending SIGKILL`);
                    child.kill("SIGKILL");
                    await settlesWithin(exited, 5000);
                }
            }
            live.delete(entry);
            fs.rmSync(dir, { recursive: true, force: true });
        })();
        return stopping;
    };

    try {
        await waitHealthy();
    } catch (e) {
        await stop();
        throw e;
    }
    log(`vault ${version} ready at ${address} (pid ${child.pid})`);
    return { address, caCertFile, token, dir, pid: child.pid as number, vaultBin, version, stop };

    async function waitHealthy(): Promise<void> {
        const deadline = Date.now() + readyTimeoutMs;
        let last = "no answer yet";
        while (Date.now() < deadline) {
            if (spawnError) throw new Error(`cannot run ${vaultBin}: ${spawnError.message}`);
            if (child.exitCode !== null || child.signalCode !== null) {
                const tail = redactedTail(logFile, [token]);
                throw new ServerExited(
                    `vault server exited early (code ${child.exitCode}, signal ${child.signalCode}); last log lines:\n${tail}`,
                    // Vault 1.21 says "listen tcp 127.0.0.1:<port>: bind: address already in use".
                    tail.includes(`127.0.0.1:${port}: bind: address already in use`),
                );
            }
            if (fs.existsSync(caCertFile)) {
                try {
                    const res = await httpsRequest({
                        address,
                        ca: fs.readFileSync(caCertFile, "utf8"),
                        method: "GET",
                        path: "/v1/sys/health",
                        timeoutMs: 2000,
                    });
                    // 200 = initialized, unsealed and active.
                    if (res.status === 200) return;
                    last = `sys/health answered ${res.status}: ${res.text.slice(0, 200)}`;
                } catch (e) {
                    last = (e as Error).message;
                }
            }
            await sleep(150);
        }
        throw new Error(
            `vault server at ${address} not healthy after ${readyTimeoutMs} ms (${last}); last log lines:\n` +
                redactedTail(logFile, [token]),
        );
    }
}
