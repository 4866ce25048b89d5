// One app host for the unit tier: a real home owned by a real app user (when
// running as root), the systemctl and podman shims, and a stand-in agent that
// behaves like Vault Agent's `pkiCert` (renders only when its target is
// missing, then runs the post-hook) so the host steps can be run, failed and
// interrupted without a Vault server. The steps run exactly as rendered for
// production: launcher as whoever runs the test, body as the app user.
import { spawn, spawnSync, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { defaultMetricsTextfile, hostPaths } from "../../lib/naming";
import {
    DEFAULT_HOST_PATH,
    metricsPaths,
    HostUser,
    renderAgentConfigScript,
    renderAgentFilesScript,
    renderAgentKeygenScript,
    renderRecordVerificationScript,
    renderReloadHook,
    renderRotateScript,
    renderVerifyScript,
} from "../../components/renderers/scripts";
import { REPO_ROOT } from "./harness";
import { AppUser, createAppUsers, makeOwnedDir, removeAppUsers, runningAsRoot } from "./hostUsers";

const certs = new Map<string, string>();
/**
 * A real self-signed certificate with CN `fake-<tag>`, one per tag: the rotate
 * unit passes on only blocks that openssl parses as certificates.
 */
export const CERT = (tag: string): string => {
    let pem = certs.get(tag);
    if (pem === undefined) {
        const r = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-subj", `/CN=fake-${tag}`, "-days", "2"], { encoding: "utf8" });
        if (r.status !== 0) throw new Error(`openssl req: ${r.stderr}`);
        pem = r.stdout;
        certs.set(tag, pem);
    }
    return pem;
};
export const KEY_BLOCK = "-----BEGIN EC PRIVATE KEY-----\nTEST-LEAF-KEY-MATERIAL\n-----END EC PRIVATE KEY-----\n";

export interface FakeHost {
    root: string;
    user: AppUser;
    u: HostUser;
    paths: ReturnType<typeof hostPaths>;
    /** Where the stand-in agent takes its next render from. */
    nextRender: string;
    shimState: string;
    podmanDir: string;
    /** The agent-keygen step: a new key on the host, its CSR on stdout. */
    runKeygen(): SpawnSyncReturns<string>;
    /** Signs a CSR with the host's throwaway CA (Vault's part), for the agent's CN. */
    signCsr(csrPem: string): string;
    /**
     * The write-agent-files step with `certPem`; without one, with the cert of
     * the last key generated (a keygen and a signature first if there is none,
     * returning the keygen's result if that fails).
     */
    runFiles(certPem?: string): SpawnSyncReturns<string>;
    runConfig(): SpawnSyncReturns<string>;
    runRotate(waitSeconds?: number): SpawnSyncReturns<string>;
    /** The verify step (textfile at `metricsTextfile`), expecting these token policies. */
    runVerify(opts?: { expectedPolicies?: string[]; leafMinRemainingSeconds?: number; agentMinRemainingSeconds?: number }): SpawnSyncReturns<string>;
    runRecordVerification(): SpawnSyncReturns<string>;
    /** From now on the fake vault CLI's cert login works and its token carries `policies`. */
    allowLogin(policies: string[]): void;
    metricsTextfile: string;
    /** Starts the rotate step without waiting (for interrupting it), optionally with a time limit of its own. */
    startRotate(waitSeconds?: number, timeoutSeconds?: number): { done: Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> };
    /** Runs a shell command as the app user (how an attacker plants things). */
    asAppUser(command: string): SpawnSyncReturns<string>;
    /** Writes a file as the app user (owned by it). */
    writeAsAppUser(file: string, text: string, mode?: number): void;
    stopAgent(): void;
    close(): void;
}

const SERVICE = "vault-agent-app-a";
export const AGENT_CN = "app-a-agent.internal";

/** A throwaway CA standing in for Vault's PKI (real openssl, real signatures). */
function makeCa(dir: string): (csrPem: string) => string {
    fs.mkdirSync(dir, { mode: 0o700 });
    const key = path.join(dir, "ca.key");
    const cert = path.join(dir, "ca.crt");
    const run = (args: string[], input?: string) => {
        const r = spawnSync("openssl", args, { input, encoding: "utf8" });
        if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
        return r.stdout;
    };
    run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=fake-host-ca", "-days", "1"]);
    return (csrPem) => run(["x509", "-req", "-CA", cert, "-CAkey", key, "-days", "1", "-set_serial", String(Date.now())], csrPem);
}

/** The stand-in agent: `pkiCert` semantics (reuse a present render), then the hook, then stay up. */
function fakeAgentScript(rendered: string, hook: string, nextRender: string, noRender: string): string {
    return `#!/bin/sh
set -u
umask 077
sleep 0.2
if [ ! -f ${JSON.stringify(noRender)} ] && [ ! -f ${JSON.stringify(rendered)} ]; then
  cat ${JSON.stringify(nextRender)} >${JSON.stringify(rendered)}.tmp && mv -f ${JSON.stringify(rendered)}.tmp ${JSON.stringify(rendered)}
  ${JSON.stringify(hook)}
fi
exec sleep 3600
`;
}

export function makeFakeHost(): FakeHost {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-host-"));
    fs.chmodSync(root, 0o755);
    const home = path.join(root, "home", "app-a");
    fs.mkdirSync(path.dirname(home), { recursive: true, mode: 0o755 });
    const [user] = createAppUsers([{ app: "app-a", home }]);
    makeOwnedDir(home, user, 0o750);
    const bin = path.join(root, "bin");
    fs.mkdirSync(bin, { mode: 0o755 });
    for (const shim of ["systemctl", "podman"]) fs.copyFileSync(path.join(REPO_ROOT, "test", "shims", shim), path.join(bin, shim));
    // A vault CLI that knows its version and cannot reach any server, unless a test
    // allows logins (allowLogin): then a login works and its token carries those policies.
    const loginPolicies = path.join(root, "login-policies");
    fs.writeFileSync(
        path.join(bin, "vault"),
        `#!/bin/sh
if [ "$1" = version ]; then echo 'Vault v1.21.0 (fake)'; exit 0; fi
if [ -f ${JSON.stringify(loginPolicies)} ]; then
  case "$1" in
    login) exit 0 ;;
    read) printf '[%s]\\n' "$(cat ${JSON.stringify(loginPolicies)})"; exit 0 ;;
    token) exit 0 ;;
  esac
fi
echo "fake vault: no server here" >&2
exit 2
`,
    );
    const paths = hostPaths(home, "app-a");
    const metricsTextfile = defaultMetricsTextfile(home, "app-a");
    const u: HostUser = { app: "app-a", user: user.name, home, hostPath: `${bin}:${DEFAULT_HOST_PATH}` };
    const nextRender = path.join(root, "next-render.pem");
    const noRender = path.join(root, "no-render");
    fs.writeFileSync(nextRender, CERT("NEW") + CERT("CA") + KEY_BLOCK);
    fs.chmodSync(nextRender, 0o644);
    fs.writeFileSync(path.join(bin, "fake-agent"), fakeAgentScript(paths.renderedFullchain, paths.hook, nextRender, noRender));
    for (const f of fs.readdirSync(bin)) fs.chmodSync(path.join(bin, f), 0o755);

    const shimState = path.join(home, ".local", "state", "systemctl-shim");
    const podmanDir = path.join(home, ".local", "share", "podman-shim");
    for (const d of [".config", ".config/systemd", ".config/systemd/user", ".local", ".local/share", ".local/share/podman-shim", ".local/state", ".local/state/systemctl-shim"]) {
        makeOwnedDir(path.join(home, d), user, 0o700);
    }
    const own = (f: string) => runningAsRoot() && fs.chownSync(f, user.uid, user.gid);
    const unit = path.join(home, ".config/systemd/user", `${SERVICE}.service`);
    fs.writeFileSync(unit, `[Service]\nExecStart=${bin}/fake-agent\nEnvironment=PATH=${u.hostPath}\nEnvironment=HOME=${home}\n`);
    own(unit);
    const containers = path.join(podmanDir, "containers");
    fs.writeFileSync(containers, "app-a-web tls=true\nedge-proxy role=edge\n");
    own(containers);

    const hookText = renderReloadHook({
        app: "app-a",
        label: "tls=true",
        proxy: "podman:edge-proxy",
        signal: "SIGHUP",
        renderedFullchain: paths.renderedFullchain,
        fullchain: paths.fullchain,
        statusFile: paths.reloadStatus,
        metrics: metricsPaths(home, "app-a", metricsTextfile),
    });
    const rotateScript = (waitSeconds: number, timeoutSeconds?: number) =>
        renderRotateScript({ ...u, timeoutSeconds, service: SERVICE, waitSeconds, login: { vaultAddress: "https://127.0.0.1:1", certAuthPath: "cert", mapping: "agent-app-a" } });
    const signCsr = makeCa(path.join(root, "ca"));
    let signedCert: string | undefined;
    const runKeygen = () => {
        const r = sh(renderAgentKeygenScript({ ...u, commonName: AGENT_CN }));
        signedCert = r.status === 0 ? signCsr(r.stdout) : undefined;
        return r;
    };
    const sh = (script: string, input = "") => spawnSync("/bin/sh", ["-c", script], { input, encoding: "utf8", cwd: REPO_ROOT });
    const asAppUser = (command: string) =>
        runningAsRoot() ? spawnSync("runuser", ["-u", user.name, "--", "/bin/sh", "-c", command], { encoding: "utf8" }) : spawnSync("/bin/sh", ["-c", command], { encoding: "utf8" });

    const stopAgent = () => {
        const pidFile = path.join(shimState, `${SERVICE}.pid`);
        if (!fs.existsSync(pidFile)) return;
        try {
            process.kill(Number(fs.readFileSync(pidFile, "utf8")), "SIGKILL");
        } catch {
            // gone already
        }
    };
    return {
        root,
        user,
        u,
        paths,
        nextRender,
        shimState,
        podmanDir,
        runKeygen,
        signCsr,
        runFiles(certPem) {
            if (certPem === undefined && signedCert === undefined) {
                const k = runKeygen();
                if (k.status !== 0) return k;
            }
            return sh(renderAgentFilesScript({ ...u, agentCertPem: certPem ?? signedCert!, listenerCaPem: CERT("LISTENER") }));
        },
        runConfig: () => sh(renderAgentConfigScript({ ...u, agentHclText: "# agent.hcl\n", templateText: "{{ .Cert }}\n", hookText })),
        runRotate: (waitSeconds = 5) => sh(rotateScript(waitSeconds)),
        runVerify: (opts = {}) =>
            sh(
                renderVerifyScript({
                    ...u,
                    service: SERVICE,
                    login: { vaultAddress: "https://127.0.0.1:1", certAuthPath: "cert", mapping: "agent-app-a" },
                    expectedPolicies: opts.expectedPolicies ?? ["app-a-issue", "default"],
                    leafMinRemainingSeconds: opts.leafMinRemainingSeconds ?? 60,
                    agentMinRemainingSeconds: opts.agentMinRemainingSeconds ?? 60,
                    textfile: metricsTextfile,
                }),
            ),
        runRecordVerification: () => sh(renderRecordVerificationScript({ ...u, textfile: metricsTextfile })),
        allowLogin: (policies) => fs.writeFileSync(loginPolicies, policies.join(" "), { mode: 0o644 }),
        metricsTextfile,
        startRotate(waitSeconds = 5, timeoutSeconds?: number) {
            const child = spawn("/bin/sh", ["-c", rotateScript(waitSeconds, timeoutSeconds)], { stdio: ["ignore", "pipe", "pipe"], cwd: REPO_ROOT });
            let stderr = "";
            child.stderr.on("data", (d) => (stderr += String(d)));
            child.stdout.resume();
            return { done: new Promise((resolve) => child.on("close", (status, signal) => resolve({ status, signal, stderr }))) };
        },
        asAppUser,
        writeAsAppUser(file, text, mode = 0o600) {
            fs.writeFileSync(file, text, { mode });
            if (runningAsRoot()) fs.chownSync(file, user.uid, user.gid);
        },
        stopAgent,
        close() {
            stopAgent();
            removeAppUsers([user]);
            fs.rmSync(root, { recursive: true, force: true });
        },
    };
}

/** The pid of a running step body (`sh -c BODY vault-rotation:<app>:<step>`), or undefined. */
export function findBodyPid(app: string, step: string): number | undefined {
    for (const entry of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        let argv: string[];
        try {
            argv = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
        } catch {
            continue;
        }
        if (argv[0] === "/bin/sh" && argv[1] === "-c" && argv[3] === `vault-rotation:${app}:${step}`) return Number(entry);
    }
    return undefined;
}

/** Every file and directory under `dir` with mode, owner and content: to prove a decoy untouched. */
export function snapshot(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (p: string) => {
        const st = fs.lstatSync(p);
        const id = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
        if (st.isDirectory()) {
            out[p] = `dir ${id}`;
            for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
        } else if (st.isSymbolicLink()) {
            out[p] = `link ${id} -> ${fs.readlinkSync(p)}`;
        } else {
            out[p] = `file ${id} ${fs.readFileSync(p, "utf8")}`;
        }
    };
    walk(dir);
    return out;
}
