// A real OpenSSH server for the ssh tier: Debian's /usr/sbin/sshd run as a plain
// daemon (`-D -e -f <own config>`) on a free loopback port, with a throwaway
// host key (ed25519 unless asked otherwise), public-key logins only, authorized keys kept in the
// fixture's own directory (one root-owned file per user), and a VERBOSE log.
//
// As root it serves any real user it is told to authorize (the sandbox's app
// users); as anyone else sshd cannot switch users, so it serves the current
// user only (same-user mode), which is all a non-root sandbox has anyway.
import { ChildProcess, execFileSync, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { runningAsRoot } from "./hostUsers";

export const SSHD_BIN = "/usr/sbin/sshd";

export interface SshdFixture {
    /** The fixture's directory (config, host key, authorized keys, log). */
    dir: string;
    /** Addresses sshd listens on (all loopback). */
    listen: string[];
    port: number;
    /** The host key as a stack pins it: `<type> <base64>`. */
    hostKey: string;
    /** The client key the runner logs in with (OpenSSH format); public half authorized per user. */
    clientPrivateKey: string;
    /** sshd's own log (LogLevel VERBOSE). */
    logFile: string;
    /** Lets `user` log in with the client key. */
    authorize(user: string): void;
    /** sshd's log so far. */
    log(): string;
    /** Stops sshd (idempotent) and removes its directory; `keepLogAs` copies the log first. */
    stop(keepLogAs?: string): void;
}

/** A loopback address: 127.0.0.0/8, ::1 or localhost (what the sandbox may rehearse). */
export function isLoopbackHost(host: string): boolean {
    const h = host.toLowerCase();
    if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
    const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
    return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

/** The address sshd listens on for a stack's loopback host name. */
function listenAddress(host: string): string {
    return host.toLowerCase() === "localhost" ? "127.0.0.1" : host;
}

function freePort(host: string): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen(0, host, () => {
            const port = (srv.address() as net.AddressInfo).port;
            srv.close(() => resolve(port));
        });
    });
}

function sleep(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
}

/** Blocks briefly without a shell (used by the synchronous stop()). */
function sleepSync(ms: number): void {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function sshdVersion(): [number, number] {
    const r = spawnSync(SSHD_BIN, ["-V"], { encoding: "utf8" });
    const m = /OpenSSH_(\d+)\.(\d+)/.exec(`${r.stdout}${r.stderr}`);
    return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * Where the fixture lives. sshd's StrictModes checks every directory above an
 * authorized_keys file: each must belong to root (or the user) and be writable
 * by no one else, which rules out /tmp (1777). As root: /run (root, 0755). As
 * anyone else: under the user's home, where the check stops.
 */
function fixtureBase(): string {
    const base = runningAsRoot() ? "/run/vault-rotation-sshd" : path.join(os.homedir(), ".cache", "vault-rotation", "sshd");
    fs.mkdirSync(base, { recursive: true, mode: 0o755 });
    return base;
}

/**
 * Starts sshd on a free port on each of `hosts` (loopback names, default
 * 127.0.0.1). Nobody can log in until authorize(user) is called.
 */
export async function startSshd(opts: { hosts?: string[]; hostKeyType?: "ed25519" | "ecdsa" | "rsa" } = {}): Promise<SshdFixture> {
    if (!fs.existsSync(SSHD_BIN)) {
        throw new Error(`${SSHD_BIN} is missing: install OpenSSH's server (apt-get install openssh-server; .ci/run does)`);
    }
    const listen = [...new Set((opts.hosts ?? ["127.0.0.1"]).map(listenAddress))];
    const bad = listen.filter((h) => !isLoopbackHost(h));
    if (bad.length > 0) throw new Error(`sshd fixture: only loopback addresses, got ${bad.join(", ")}`);
    // Privilege separation needs this empty root-owned directory (the Debian
    // package's service creates it at boot; a plain daemon must find it).
    if (runningAsRoot()) fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });

    const dir = fs.mkdtempSync(path.join(fixtureBase(), "sshd-"));
    fs.chmodSync(dir, 0o755);
    const authDir = path.join(dir, "authorized_keys");
    fs.mkdirSync(authDir, { mode: 0o755 });
    const hostKeyType = opts.hostKeyType ?? "ed25519";
    const hostKeyFile = path.join(dir, `ssh_host_${hostKeyType}_key`);
    const clientKeyFile = path.join(dir, "client_ed25519");
    execFileSync("ssh-keygen", ["-q", "-t", hostKeyType, ...(hostKeyType === "rsa" ? ["-b", "3072"] : []), "-N", "", "-C", "", "-f", hostKeyFile]);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "vault-rotation-test-runner", "-f", clientKeyFile]);
    const hostKey = fs.readFileSync(`${hostKeyFile}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    const clientPublicKey = fs.readFileSync(`${clientKeyFile}.pub`, "utf8").trim();
    const clientPrivateKey = fs.readFileSync(clientKeyFile, "utf8");
    // The private half lives on in memory only (the stack's secret), not on disk.
    fs.rmSync(clientKeyFile);
    const logFile = path.join(dir, "sshd.log");
    const pidFile = path.join(dir, "sshd.pid");
    const configFile = path.join(dir, "sshd_config");
    const [major, minor] = sshdVersion();

    const writeConfig = (port: number) =>
        fs.writeFileSync(
            configFile,
            [
                "# vault-rotation test fixture: public-key logins of authorized users only, nothing forwarded.",
                `Port ${port}`,
                ...listen.map((a) => `ListenAddress ${a.includes(":") ? `[${a}]` : a}`),
                `HostKey ${hostKeyFile}`,
                `PidFile ${pidFile}`,
                `AuthorizedKeysFile ${authDir}/%u`,
                "AuthorizedPrincipalsFile none",
                "AuthenticationMethods publickey",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "HostbasedAuthentication no",
                "PermitRootLogin no",
                "PermitEmptyPasswords no",
                "UsePAM no",
                "StrictModes yes",
                "PermitUserEnvironment no",
                "PermitUserRC no",
                "AllowAgentForwarding no",
                "AllowTcpForwarding no",
                "AllowStreamLocalForwarding no",
                "X11Forwarding no",
                "PermitTunnel no",
                "PermitTTY no",
                "PrintMotd no",
                "PrintLastLog no",
                "LogLevel VERBOSE",
                // Every host step is its own session, quickly one after another.
                "MaxStartups 100:30:200",
                // OpenSSH 9.8+ penalises addresses that fail auth; the wrong-key and
                // refused-login tests come from the same loopback address as the rest.
                ...(major > 9 || (major === 9 && minor >= 8) ? ["PerSourcePenalties no"] : []),
                "",
            ].join("\n"),
        );

    let child: ChildProcess | undefined;
    let port = 0;
    let lastProblem = "";
    for (let attempt = 0; attempt < 3 && child === undefined; attempt++) {
        port = await freePort(listen[0]);
        writeConfig(port);
        const test = spawnSync(SSHD_BIN, ["-t", "-f", configFile], { encoding: "utf8" });
        if (test.status !== 0) throw new Error(`sshd fixture: sshd -t rejects ${configFile}: ${test.stderr.trim()}`);
        fs.writeFileSync(logFile, "");
        const logFd = fs.openSync(logFile, "a");
        // An absolute path: sshd re-executes itself for every connection.
        const proc = spawn(SSHD_BIN, ["-D", "-e", "-f", configFile], { stdio: ["ignore", logFd, logFd], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
        fs.closeSync(logFd);
        let exited = false;
        proc.once("exit", () => (exited = true));
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline && !exited) {
            if (fs.readFileSync(logFile, "utf8").includes(`Server listening on`) && fs.existsSync(pidFile)) break;
            await sleep(50);
        }
        const log = fs.readFileSync(logFile, "utf8");
        if (!exited && log.includes("Server listening on")) {
            child = proc;
        } else {
            lastProblem = log.trim().split("\n").slice(-5).join(" | ") || "no output";
            if (!exited) proc.kill("SIGKILL");
        }
    }
    if (child === undefined) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`sshd fixture: sshd did not start on ${listen.join(", ")}: ${lastProblem}`);
    }
    const proc = child;
    // Never leave a daemon behind when the test process exits early.
    const onExit = () => proc.kill("SIGKILL");
    process.once("exit", onExit);

    let stopped = false;
    return {
        dir,
        listen,
        port,
        hostKey,
        clientPrivateKey,
        logFile,
        authorize(user: string) {
            if (!/^[a-z_][a-z0-9_-]*$/.test(user)) throw new Error(`sshd fixture: not a user name: ${user}`);
            // Root-owned, 0644: the user cannot change who may log in as them.
            fs.writeFileSync(path.join(authDir, user), `${clientPublicKey}\n`, { mode: 0o644 });
        },
        log() {
            return fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "";
        },
        stop(keepLogAs?: string) {
            if (stopped) return;
            stopped = true;
            process.off("exit", onExit);
            if (keepLogAs && fs.existsSync(logFile)) fs.copyFileSync(logFile, keepLogAs);
            proc.kill("SIGTERM");
            // Synchronous (sandbox.close() is): Node reaps the child only on a later
            // tick, so "gone" here means no process or a zombie.
            const gone = () => {
                try {
                    return / Z /.test(fs.readFileSync(`/proc/${proc.pid}/stat`, "utf8").replace(/^.*\)/, ""));
                } catch {
                    return true;
                }
            };
            for (let i = 0; i < 100 && !gone(); i++) sleepSync(50);
            if (!gone()) proc.kill("SIGKILL");
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}
