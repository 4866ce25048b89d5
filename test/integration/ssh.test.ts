// Remote hosts for real: the program's command.remote steps performed over SSH
// (OpenSSH client, pinned host key) against a real sshd on this machine, which
// logs in as the app user itself. The stack (test/stacks/ssh-loopback.yaml)
// has app-a local and app-b on ssh, so every run compares the two directly.
import { ChildProcess, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { loadStackConfig, REPO_ROOT, withEpoch } from "../support/harness";
import { privateKeyNeedles } from "../support/keyNeedles";
import { openSandbox, Sandbox } from "../support/sandbox";
import { startSshd } from "../support/sshd";
import { runRemote } from "../support/sshExec";
import { TEST_HOST_KEY } from "../support/stacks";
import { testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
let sandbox: Sandbox;
const STACK = path.join(REPO_ROOT, "test", "stacks", "ssh-loopback.yaml");

async function apply(config: Record<string, string>, state?: ApplierState): Promise<ApplyResult> {
    return applyProgram({ config, state, vault, stack: "local", log: () => undefined });
}

/** A run expected to fail, in a process of its own (test/support/applyOnce.ts says why); its error message. */
function failedApply(config: Record<string, string>): string {
    const r = spawnSync(path.join(REPO_ROOT, "node_modules", ".bin", "ts-node"), ["--transpile-only", path.join(REPO_ROOT, "test", "support", "applyOnce.ts")], {
        input: JSON.stringify({ config, vault }),
        cwd: REPO_ROOT,
        encoding: "utf8",
        timeout: 240_000,
    });
    const out = JSON.parse(r.stdout || `{"ok":false,"error":${JSON.stringify(`applyOnce exited ${r.status}: ${r.stderr}`)}}`) as { ok: boolean; error?: string };
    expect(out.ok).toBe(false);
    return out.error ?? "";
}

/** The stack with app-b's ssh settings changed. */
function withAppB(config: Record<string, string>, ssh: Record<string, unknown>): Record<string, string> {
    const apps = JSON.parse(config["vault-rotation:apps"]);
    apps[1].host = { ...apps[1].host, ssh: { ...apps[1].host.ssh, ...ssh } };
    return { ...config, "vault-rotation:apps": JSON.stringify(apps) };
}

/** Base64 body lines of the ssh key (an OpenSSH key: its public part appears nowhere here). */
function keyLines(pem: string): string[] {
    return pem
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l.length >= 16 && !l.startsWith("-----"));
}

/** Samples every process's user, command line and environment until stopped. */
function startProcessSampler(file: string): ChildProcess {
    fs.writeFileSync(file, "");
    return spawn("/bin/sh", ["-c", 'while :; do ps axeww -o user:32=,pid=,args= >>"$1" 2>/dev/null; sleep 0.05; done', "sampler", file], { stdio: "ignore" });
}

async function stopSampler(p: ChildProcess): Promise<void> {
    await new Promise<void>((resolve) => {
        p.once("exit", () => resolve());
        p.kill("SIGKILL");
    });
}

function freeClosedPort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as net.AddressInfo).port;
            srv.close(() => resolve(port));
        });
    });
}

beforeAll(async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-ssh-it-"));
    sandbox = await openSandbox({ root, config: loadStackConfig(STACK), vault });
}, 60_000);

afterAll(() => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

describe("before anything is sent", () => {
    it("a wrong pinned host key fails app-b's first step, sends nothing and writes nothing", () => {
        expect(sandbox.sshd).toBeDefined();
        const logBefore = sandbox.sshd!.log().length;
        const wrong = withAppB(sandbox.config, { hostKey: TEST_HOST_KEY });
        expect(failedApply(wrong)).toMatch(
            new RegExp(
                `app-b-agent-keygen: 127\\.0\\.0\\.1 port ${sandbox.sshd!.port} presented ED25519 key SHA256:\\S+, not the pinned key \\(connection\\.hostKey: ssh-ed25519 SHA256:\\S+\\); nothing was sent \\(ssh: Host key verification failed\\.\\)`,
            ),
        );
        // Nothing under app-b's home: no vault/ directory, no key.
        expect(fs.readdirSync(sandbox.home("app-b")).filter((f) => !f.startsWith("."))).toEqual([]);
        // sshd saw a connection that never got as far as authentication.
        const log = sandbox.sshd!.log().slice(logBefore);
        expect(log).toMatch(/Connection from 127\.0\.0\.1/);
        expect(log).not.toMatch(/publickey|Accepted|session opened|Starting session/i);
    });

    it("a refused connection fails naming the host and the port", async () => {
        const port = await freeClosedPort();
        expect(failedApply(withAppB(sandbox.config, { port }))).toMatch(new RegExp(`app-b-agent-keygen: cannot reach 127\\.0\\.0\\.1 port ${port}: connection refused`));
        expect(fs.existsSync(path.join(sandbox.home("app-b"), "vault"))).toBe(false);
    });
});

describe("pinned key types", () => {
    it.each(["ecdsa", "rsa"] as const)("logs in to a host pinned by its %s key, and refuses the same host pinned by another", async (hostKeyType) => {
        const sshd = await startSshd({ hostKeyType });
        try {
            const user = sandbox.user("app-b").name;
            sshd.authorize(user);
            const conn = { host: "127.0.0.1", port: sshd.port, user, hostKey: sshd.hostKey, privateKey: sshd.clientPrivateKey };
            expect(sshd.hostKey).toMatch(hostKeyType === "rsa" ? /^ssh-rsa / : /^ecdsa-sha2-nistp256 /);
            expect(runRemote("probe", conn, "id -un; cat", "from stdin\n")).toEqual({ stdout: `${user}\nfrom stdin`, stderr: "" });
            expect(() => runRemote("probe", { ...conn, hostKey: sandbox.sshd!.hostKey }, "id -un", undefined)).toThrow(
                /^probe: 127\.0\.0\.1 port \d+ has no ssh-ed25519 host key \(it offers \S+\), not the pinned key \(connection\.hostKey: ssh-ed25519 SHA256:\S+\); nothing was sent/,
            );
        } finally {
            sshd.stop();
        }
    });
});

describe("a rotation over ssh", () => {
    let first: ApplyResult;
    let rotated: ApplyResult;
    let again: ApplyResult;
    let sampled = "";
    const agentKeys: string[] = [];
    const restarts = () => fs.readFileSync(path.join(sandbox.systemctlDir("app-b"), "calls.log"), "utf8").split("\n").filter((l) => l.includes(" restart ")).length;
    let restartsBeforeNoop = 0;

    beforeAll(async () => {
        const sampleFile = path.join(sandbox.root, "ps-samples.txt");
        const sampler = startProcessSampler(sampleFile);
        try {
            first = await apply(sandbox.config);
            agentKeys.push(sandbox.agentFiles("app-b").keyPem);
            rotated = await apply(withEpoch(sandbox.config, "ssh-2"), first.state);
            agentKeys.push(sandbox.agentFiles("app-b").keyPem);
        } finally {
            await stopSampler(sampler);
        }
        sampled = fs.readFileSync(sampleFile, "utf8");
        restartsBeforeNoop = restarts();
        again = await apply(withEpoch(sandbox.config, "ssh-2"), rotated.state);
    }, 300_000);

    /** One app's steps as `<step without the app prefix> <action>`, with command.remote counted as a command like command.local. */
    const stepsOf = (r: ApplyResult, app: string) =>
        r.steps
            .filter((s) => s.name.startsWith(`${app}-`))
            .map((s) => `${s.type.replace(/^command:(local|remote):/, "command:")} ${s.name.slice(app.length + 1)} ${s.action}`)
            .sort();

    it("runs app-b's host steps as command.remote and app-a's as command.local", () => {
        const types = (app: string) => new Set(first.steps.filter((s) => s.name.startsWith(`${app}-`) && s.type.startsWith("command:")).map((s) => s.type));
        expect([...types("app-a")]).toEqual(["command:local:Command"]);
        expect([...types("app-b")]).toEqual(["command:remote:Command"]);
    });

    it("behaves exactly as the local app on the first run, the rotation and the no-op run", () => {
        for (const r of [first, rotated, again]) expect(stepsOf(r, "app-b")).toEqual(stepsOf(r, "app-a"));
        expect(again.steps.filter((s) => s.action !== "same")).toEqual([]);
        expect(restarts()).toBe(restartsBeforeNoop);
    });

    it("logged in as app-b's own user: the files belong to it, the agent cert rotated and the old one is refused", async () => {
        const user = sandbox.user("app-b");
        const key = fs.statSync(path.join(sandbox.home("app-b"), "vault", "mtls", "agent.key"));
        expect({ uid: key.uid, mode: key.mode & 0o777 }).toEqual({ uid: user.uid, mode: 0o600 });
        expect(sandbox.sshd!.log()).toMatch(new RegExp(`Accepted publickey for ${user.name} from 127\\.0\\.0\\.1`));
        const before = first.evaluation.exports.apps as Record<string, Record<string, unknown>>;
        const after = rotated.evaluation.exports.apps as Record<string, Record<string, unknown>>;
        expect(after["app-b"].agentCertSerial).not.toBe(before["app-b"].agentCertSerial);
        expect(after["app-b"].leafSerial).not.toBe(before["app-b"].leafSerial);
        const old = await vaultRequest(vault, "GET", `pki_int/cert/${before["app-b"].agentCertSerial}`);
        expect((old.body as { data: { revocation_time: number } }).data.revocation_time).toBeGreaterThan(0);
    });

    it("never shows the agent key or the ssh key in any process's arguments or environment, or in sshd's VERBOSE log", () => {
        const user = sandbox.user("app-b").name;
        // The sampler did watch the remote side: processes of app-b's user running its host steps.
        const remote = sampled.split("\n").filter((l) => l.startsWith(`${user} `) && l.includes("vault-rotation:app-b:"));
        expect(remote.length).toBeGreaterThan(0);
        const secrets = [...agentKeys.flatMap(privateKeyNeedles), ...keyLines(sandbox.sshd!.clientPrivateKey)];
        expect(secrets.length).toBeGreaterThan(6);
        const log = sandbox.sshd!.log();
        expect(log).toMatch(/LogLevel|Accepted key ED25519|Accepted publickey/);
        for (const line of secrets) {
            expect(sampled.includes(line) ? `process list shows ${line}` : "absent").toBe("absent");
            expect(log.includes(line) ? `sshd log shows ${line}` : "absent").toBe("absent");
        }
    });
});
