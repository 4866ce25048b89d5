// `npm run status`: real TLS listeners on loopback serving TestPki leaves, a fake
// unauthenticated Vault (ca_chain, cert/<serial>, sys/health) and the outputs
// JSON of the contract; the verdicts, the table, the exit codes, the Pulumi CLI
// as the outputs' source, and the script end to end without a token.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as tls from "tls";
import { parseCertificate } from "../../providers/pem";
import {
    assessApp,
    assessStack,
    exitCodeOf,
    formatTable,
    liveLook,
    parseArgs,
    parseStackOutputs,
    readOutputs,
    statusOfSource,
    type LiveLook,
    type StackAssessment,
} from "../../scripts/status";
import { routes, startFakeVault, unusedLoopbackPort, type TestHttpsServer } from "../support/httpsServer";
import { TestPki, type TestCert } from "../support/tls";

const REPO_ROOT = path.resolve(__dirname, "../..");
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const PLAN = { every: "24h", everySeconds: 86_400, marginSeconds: 21_600, window: "daily 03:00 UTC" };
const FAST = { attempts: 2, firstDelayMs: 50, timeoutMs: 2000 };

let pki: TestPki;
let intermediate: TestCert;
let chain: string;
let vault: TestHttpsServer;
let listenerCaFile: string;
/** What the fake Vault holds under `pki/cert/<serial>`. */
const stored = new Map<string, { pem: string; revokedAt?: Date }>();
let serverVersion = "1.21.1";
const servers: tls.Server[] = [];

const serialOf = (c: TestCert) => parseCertificate(c.certPem).serial;
const notAfterOf = (c: TestCert) => parseCertificate(c.certPem).notAfter.toISOString();

/** Issued by the intermediate and stored in the fake Vault, as the PKI would. */
function issue(commonName: string, opts: { notBefore?: Date; notAfter?: Date; client?: boolean } = {}): TestCert {
    const cert = pki.issue({
        issuer: intermediate,
        commonName,
        dnsNames: opts.client ? [] : [commonName],
        usage: [opts.client ? "clientAuth" : "serverAuth"],
        notBefore: opts.notBefore ?? new Date(Date.now() - 2 * HOUR),
        notAfter: opts.notAfter ?? new Date(Date.now() + 10 * DAY),
    });
    stored.set(serialOf(cert), { pem: cert.certPem });
    return cert;
}

interface Fixture {
    name: string;
    agent: TestCert;
    leaf: TestCert;
    server: tls.Server;
    endpoint: string;
    serve(leaf: TestCert): void;
}

/** An app: its agent cert (3 days), its verified leaf (10 days, notBefore 2h ago) served on loopback. */
async function app(name: string): Promise<Fixture> {
    const cn = `${name}.internal`;
    const agent = issue(`agent-${name}`, { client: true, notAfter: new Date(Date.now() + 3 * DAY) });
    const leaf = issue(cn);
    const server = tls.createServer({ cert: `${leaf.certPem}${intermediate.certPem}`, key: leaf.keyPem }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    servers.push(server);
    const endpoint = `127.0.0.1:${(server.address() as { port: number }).port}`;
    return { name, agent, leaf, server, endpoint, serve: (l) => server.setSecureContext({ cert: `${l.certPem}${intermediate.certPem}`, key: l.keyPem }) };
}

/** The outputs the contract describes, for these apps, verified an hour ago unless changed. */
function outputsOf(apps: Fixture[], change: (name: string, value: Record<string, unknown>) => void = () => {}): Record<string, unknown> {
    const verifiedAt = new Date(Date.now() - HOUR).toISOString();
    const entries = apps.map((a) => {
        const facts = {
            agentCertSerial: serialOf(a.agent),
            agentCertNotAfter: notAfterOf(a.agent),
            leafSerial: serialOf(a.leaf),
            leafNotAfter: notAfterOf(a.leaf),
            leafDaysLeft: 10,
            servedSerial: serialOf(a.leaf),
            servedVia: `direct ${a.endpoint}`,
            serverVersion: "1.21.1",
            agentVersion: "1.21.1",
            versionWarning: "",
        };
        const value: Record<string, unknown> = {
            agentRole: `agent-${a.name}`,
            leafRole: `nginx-${a.name}`,
            ...facts,
            checkedAt: new Date(Date.now() - 2 * HOUR).toISOString(),
            leafCommonName: `${a.name}.internal`,
            serveEndpoint: a.endpoint,
            verification: { window: PLAN.window, verifiedAt, agentCertDaysLeft: 3, ...facts },
        };
        change(a.name, value);
        return [a.name, value];
    });
    return {
        apps: Object.fromEntries(entries),
        verificationPlan: PLAN,
        vaultTarget: { address: vault.address, pkiMount: "pki", certAuthPath: "cert" },
        rotationPlan: { epoch: "2025-06-01" },
    };
}

async function status(raw: unknown): Promise<{ result: StackAssessment; code: number; table: string; row: (app: string) => string }> {
    const outputs = parseStackOutputs(raw);
    const looks = await liveLook(outputs, { caFile: listenerCaFile, probe: FAST, vaultRetries: 0, vaultTimeoutMs: 2000 });
    const result = assessStack("test", "test outputs", outputs, looks, new Date());
    const table = formatTable(result);
    const row = (name: string) => table.split("\n").find((l) => l.startsWith(`${name} `)) ?? `(no row for ${name})`;
    return { result, code: exitCodeOf([result]), table, row };
}

beforeAll(async () => {
    pki = TestPki.create();
    const root = pki.rootCa("Status Root CA");
    intermediate = pki.issue({ issuer: root, commonName: "Status Intermediate CA", isCA: true, days: 30 });
    chain = `${intermediate.certPem}${root.certPem}`;
    const fake = await startFakeVault(pki, {
        handler: (req, i) => {
            const m = /^pki\/cert\/([0-9a-f:]+)$/.exec(req.path);
            if (req.method === "GET" && m) {
                const entry = stored.get(m[1]);
                if (!entry) return { status: 404, json: { errors: [] } };
                const revoked = entry.revokedAt ? Math.floor(entry.revokedAt.getTime() / 1000) : 0;
                return { json: { data: { certificate: entry.pem, serial_number: m[1], revocation_time: revoked, ...(revoked ? { revocation_time_rfc3339: entry.revokedAt!.toISOString() } : {}) } } };
            }
            return routes({
                "GET pki/cert/ca_chain": { json: { data: { certificate: chain } } },
                "GET sys/health": () => ({ json: { initialized: true, sealed: false, standby: false, version: serverVersion } }),
            })(req, i);
        },
    });
    vault = fake.server;
    listenerCaFile = fake.connection.caCertFile;
});

afterEach(() => {
    serverVersion = "1.21.1";
});

afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await vault.close();
    pki.cleanup();
});

it("a healthy stack: every app listed, OK, the expected serial served, exit 0", async () => {
    const apps = [await app("app-a"), await app("app-b")];
    const { result, code, table, row } = await status(outputsOf(apps));
    expect(result.apps.map((a) => [a.app, a.ok, a.reasons, a.served.verdict])).toEqual([
        ["app-a", true, [], "expected"],
        ["app-b", true, [], "expected"],
    ]);
    expect(code).toBe(0);
    expect(table).toContain("2 app(s), all OK");
    for (const a of apps) {
        expect(row(a.name)).toMatch(/ expected [0-9a-f:]+\.\.\. /);
        expect(row(a.name)).toMatch(/  OK$/);
        expect(row(a.name)).toContain(`${notAfterOf(a.agent).slice(0, 16)}Z 3.0d`);
    }
    // Nothing authenticated was asked for, and no token was sent.
    expect(vault.requests.every((r) => r.headers["x-vault-token"] === undefined)).toBe(true);
    expect(vault.requests.map((r) => r.path)).toEqual(expect.arrayContaining(["pki/cert/ca_chain", "sys/health", `pki/cert/${serialOf(apps[0].agent)}`]));
});

it("a served leaf replaced by an expired one: exit 1, naming the app and both serials", async () => {
    const [a, b] = [await app("app-a"), await app("app-b")];
    const expired = issue("app-a.internal", { notBefore: new Date(Date.now() - 5 * DAY), notAfter: new Date(Date.now() - HOUR) });
    a.serve(expired);
    const { code, row, result } = await status(outputsOf([a, b]));
    expect(code).toBe(1);
    const line = row("app-a");
    expect(line).toContain("ATTENTION: ");
    expect(line).toContain(`served leaf ${serialOf(expired)} expired at ${notAfterOf(expired)}`);
    expect(line).toContain(`is older than the expected ${serialOf(a.leaf)}`);
    expect(result.apps.find((x) => x.app === "app-a")!.leaf).toMatchObject({ from: "served", expired: true, notAfter: notAfterOf(expired) });
    expect(line).toContain(`${notAfterOf(expired).slice(0, 16)}Z EXPIRED `);
    expect(row("app-b")).toMatch(/  OK$/);
});

it("an older leaf served (earlier notBefore, still valid): attention", async () => {
    const a = await app("app-a");
    const older = issue("app-a.internal", { notBefore: new Date(Date.now() - 3 * DAY), notAfter: new Date(Date.now() + 5 * DAY) });
    a.serve(older);
    const { code, row, result } = await status(outputsOf([a]));
    expect(code).toBe(1);
    expect(result.apps[0].served.verdict).toBe("older");
    expect(row("app-a")).toContain(`served leaf ${serialOf(older)} at ${a.endpoint} is older than the expected ${serialOf(a.leaf)}`);
    expect(row("app-a")).toContain(` OLDER ${serialOf(older).slice(0, 11)}...`);
});

it("a newer render (later notBefore, valid chain and name): shown as not yet verified, not attention", async () => {
    const a = await app("app-a");
    const newer = issue("app-a.internal", { notBefore: new Date(Date.now() - 10 * 60_000) });
    a.serve(newer);
    const { code, row, table, result } = await status(outputsOf([a]));
    expect(result.apps[0].reasons).toEqual([]);
    expect(result.apps[0].served).toMatchObject({ verdict: "newer", serial: serialOf(newer) });
    expect(code).toBe(0);
    expect(row("app-a")).toContain("(not yet verified)");
    expect(table).toContain(`note: app-a: served leaf ${serialOf(newer)} at ${a.endpoint} is a newer render than the last verified ${serialOf(a.leaf)}`);
});

it("a newer leaf whose chain is not the PKI's is neither expected nor newer-valid: attention", async () => {
    const a = await app("app-a");
    const foreignRoot = pki.rootCa("Foreign Root");
    const foreign = pki.issue({ issuer: foreignRoot, commonName: "app-a.internal", dnsNames: ["app-a.internal"], notBefore: new Date(Date.now() - 60_000), days: 5 });
    a.server.setSecureContext({ cert: foreign.certPem, key: foreign.keyPem });
    const { code, row } = await status(outputsOf([a]));
    expect(code).toBe(1);
    expect(row("app-a")).toContain(`served leaf ${serialOf(foreign)} at ${a.endpoint} is neither the expected ${serialOf(a.leaf)} nor a newer valid one: its chain does not verify`);
});

it("a last verification older than 2 intervals: attention; 1.5 intervals is not", async () => {
    const a = await app("app-a");
    const at = (ms: number) => outputsOf([a], (_n, v) => ((v.verification as Record<string, unknown>).verifiedAt = new Date(Date.now() - ms).toISOString()));
    const stale = await status(at(3 * DAY));
    expect(stale.code).toBe(1);
    expect(stale.row("app-a")).toMatch(/last verification \S+ is 3\.0d old, more than 2 x every 24h \(48h\)/);
    const recent = await status(at(36 * HOUR));
    expect(recent.code).toBe(0);
    expect(recent.row("app-a")).toContain("36h ago");
});

it("never verified (no verification time and no checkedAt): attention", async () => {
    const a = await app("app-a");
    const { code, row, table } = await status(
        outputsOf([a], (_n, v) => {
            (v.verification as Record<string, unknown>).verifiedAt = "";
            delete v.checkedAt;
        }),
    );
    expect(code).toBe(1);
    expect(row("app-a")).toContain(" NEVER ");
    expect(row("app-a")).toContain("never verified");
    expect(table).toContain("note: app-a: verification has not run yet");
});

it("a revoked agent cert: attention, naming the serial and when", async () => {
    const a = await app("app-a");
    const revokedAt = new Date(Math.floor((Date.now() - 5 * 60_000) / 1000) * 1000);
    stored.get(serialOf(a.agent))!.revokedAt = revokedAt;
    const { code, row, result } = await status(outputsOf([a]));
    expect(code).toBe(1);
    expect(result.apps[0].agentCert.vault).toBe("revoked");
    expect(row("app-a")).toContain(`agent cert ${serialOf(a.agent)} is revoked (since ${revokedAt.toISOString()})`);
});

it("a revoked served leaf: attention", async () => {
    const a = await app("app-a");
    stored.get(serialOf(a.leaf))!.revokedAt = new Date();
    const { code, row } = await status(outputsOf([a]));
    expect(code).toBe(1);
    expect(row("app-a")).toContain(`served leaf ${serialOf(a.leaf)} is revoked`);
});

it("an agent cert expiring within every + margin: attention; the leaf's lifetime comes from the served leaf", async () => {
    const a = await app("app-a");
    a.agent = issue("agent-app-a", { client: true, notAfter: new Date(Date.now() + 20 * HOUR) });
    const { code, row, result } = await status(outputsOf([a]));
    expect(code).toBe(1);
    expect(row("app-a")).toContain(`agent cert ${serialOf(a.agent)} expires at ${notAfterOf(a.agent)} (in 20h), before the next verification is due (every 24h + 6h margin)`);
    expect(result.apps[0].leaf).toMatchObject({ from: "served", notAfter: notAfterOf(a.leaf) });
});

it("an older stack without verification (nor plan, serveEndpoint, leafCommonName) falls back to the rotation's checkedAt and fields, and says so", async () => {
    const a = await app("app-a");
    const raw = outputsOf([a], (_n, v) => {
        delete v.verification;
        delete v.leafCommonName;
        delete v.serveEndpoint;
    });
    delete raw.verificationPlan;
    const { code, row, table, result } = await status(raw);
    expect(result.apps[0].lastVerification).toMatchObject({ from: "rotation check", at: ((raw.apps as Record<string, Record<string, string>>)["app-a"]).checkedAt });
    expect(result.apps[0].leaf).toMatchObject({ expectedSerial: serialOf(a.leaf), from: "outputs" });
    expect(code).toBe(0);
    expect(row("app-a")).toContain("2h ago (rotation)");
    expect(row("app-a")).toContain(" not checked ");
    expect(table).toContain("note: app-a: no verification in the outputs (older stack): the rotation's check (checkedAt) stands in for the last verification");
    expect(table).toContain("note: test: no verificationPlan in the outputs (older stack): assumed verification every 24h with a 6h margin");
    expect(table).toContain("note: app-a: no leafCommonName in the outputs (older stack): serving not checked");
});

it("an unreachable endpoint: attention with the reason", async () => {
    const a = await app("app-a");
    const port = await unusedLoopbackPort();
    const { code, row, result } = await status(outputsOf([a], (_n, v) => (v.serveEndpoint = `127.0.0.1:${port}`)));
    expect(code).toBe(1);
    expect(result.apps[0].served.verdict).toBe("failed");
    expect(row("app-a")).toMatch(new RegExp(`handshake to 127\\.0\\.0\\.1:${port} \\(SNI app-a\\.internal\\) failed after 2 attempt\\(s\\): .*ECONNREFUSED`));
    expect(row("app-a")).toContain(" FAILED ");
});

it("Vault not reachable for the live look: attention on every app, the leaf judged from the outputs", async () => {
    const a = await app("app-a");
    const port = await unusedLoopbackPort();
    const raw = outputsOf([a]);
    raw.vaultTarget = { address: `https://127.0.0.1:${port}`, pkiMount: "pki", certAuthPath: "cert" };
    const { code, row, result } = await status(raw);
    expect(code).toBe(1);
    expect(row("app-a")).toMatch(/ATTENTION: Vault not reachable for the live look: https:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(result.apps[0].served).toMatchObject({ verdict: "not checked", detail: "no issuing chain to verify against (Vault not reachable)" });
    expect(result.apps[0].leaf.from).toBe("outputs");
});

it("version drift is a warning: shown, exit 0", async () => {
    const a = await app("app-a");
    serverVersion = "1.22.0";
    const { code, row, table, result } = await status(outputsOf([a]));
    expect(result.apps[0].versions.drift).toBe(true);
    expect(code).toBe(0);
    expect(row("app-a")).toContain("DRIFT agent 1.21.1 server 1.22.0");
    expect(row("app-a")).toMatch(/  OK$/);
    expect(table).toContain("warning: app-a: Vault Agent 1.21.1 differs from the Vault server 1.22.0");
});

it("assessApp is pure: the same outputs and look give attention or not by `now` alone", () => {
    const outputs = parseStackOutputs({
        apps: { x: { agentCertSerial: "0a", agentCertNotAfter: "2030-01-10T00:00:00Z", leafSerial: "0b", leafNotAfter: "2030-01-20T00:00:00Z", checkedAt: "2030-01-01T00:00:00Z" } },
        verificationPlan: PLAN,
        vaultTarget: { address: "https://vault.invalid:8200", pkiMount: "pki", certAuthPath: "cert" },
    });
    const look: LiveLook = { vaultError: "", serverVersion: "", served: { kind: "not checked", why: "no serveEndpoint" } };
    expect(assessApp(outputs.apps[0], look, new Date("2030-01-01T12:00:00Z"), outputs.plan).reasons).toEqual([]);
    expect(assessApp(outputs.apps[0], look, new Date("2030-01-09T00:00:00Z"), outputs.plan).reasons).toEqual([
        "agent cert 0a expires at 2030-01-10T00:00:00.000Z (in 24h), before the next verification is due (every 24h + 6h margin)",
        "last verification 2030-01-01T00:00:00.000Z is 8.0d old, more than 2 x every 24h (48h): the scheduled verification has not passed since",
    ]);
});

it("a stack that verifies on every run (verifyEvery every-run) is judged by its run interval", () => {
    const outputs = parseStackOutputs({
        apps: { x: { agentCertSerial: "0a", agentCertNotAfter: "2030-01-10T00:00:00Z", leafSerial: "0b", leafNotAfter: "2030-01-20T00:00:00Z", checkedAt: "2030-01-01T00:00:00Z" } },
        verificationPlan: { every: "every-run", everySeconds: 0, window: "every-run 2030-01-01T00:00:00.000Z", marginSeconds: 3600, runIntervalSeconds: 4 * 3600 },
        vaultTarget: { address: "https://vault.invalid:8200", pkiMount: "pki", certAuthPath: "cert" },
    });
    expect(outputs.plan.everySeconds).toBe(4 * 3600);
    expect(outputs.notes.join(" ")).not.toContain("older stack");
});

it("the status is undetermined (exit 2) for bad arguments and unreadable outputs", async () => {
    expect(() => parseArgs([])).toThrow("name at least one --stack or --outputs");
    expect(() => parseArgs(["--stack"])).toThrow("--stack needs a value");
    expect(() => parseArgs(["--outputs", "x.json", "--frobnicate"])).toThrow("unknown argument --frobnicate");
    expect(parseArgs(["--stack", "a", "--stack", "b"], { PULUMI_BIN: "/opt/pulumi" })).toMatchObject({ sources: [{ kind: "stack", stack: "a" }, { kind: "stack", stack: "b" }], pulumiBin: "/opt/pulumi" });
    const missing = await statusOfSource({ kind: "file", file: path.join(pki.dir, "nope.json") }, { timeoutMs: 1000 });
    expect(missing.error).toContain("ENOENT");
    const notOutputs = pki.writeFile("not-outputs.json", JSON.stringify({ rotationPlan: {} }));
    const wrong = await statusOfSource({ kind: "file", file: notOutputs }, { timeoutMs: 1000 });
    expect(wrong.error).toContain('no "apps" object');
    expect(exitCodeOf([wrong])).toBe(2);
    expect(formatTable(wrong)).toContain("STATUS UNKNOWN");
});

it("reads a stack's outputs with the Pulumi CLI: pulumi stack output --json --stack <s>, in the repository, environment passed through", async () => {
    const log = path.join(pki.dir, "fake-pulumi.log");
    const fake = pki.writeFile(
        "fake-pulumi",
        `#!/bin/sh\nprintf '%s\\n' "$*" "$PWD" "$PULUMI_BACKEND_URL" > '${log}'\nif [ "$5" = missing ]; then echo "error: no stack named 'missing' found" >&2; exit 255; fi\necho '{"apps":{}}'\n`,
    );
    fs.chmodSync(fake, 0o700);
    const backendBefore = process.env.PULUMI_BACKEND_URL;
    process.env.PULUMI_BACKEND_URL = "file:///tmp/state-for-status-test";
    try {
        expect(await readOutputs({ kind: "stack", stack: "prod" }, { pulumiBin: fake })).toEqual({ apps: {} });
        expect(fs.readFileSync(log, "utf8").split("\n").slice(0, 3)).toEqual(["stack output --json --stack prod", REPO_ROOT, "file:///tmp/state-for-status-test"]);
        const failed = await statusOfSource({ kind: "stack", stack: "missing" }, { pulumiBin: fake, timeoutMs: 1000 });
        expect(failed.error).toMatch(/stack output --json --stack missing failed \(exit 255\): error: no stack named 'missing' found/);
        const empty = await statusOfSource({ kind: "stack", stack: "prod" }, { pulumiBin: fake, timeoutMs: 1000 });
        expect(exitCodeOf([empty])).toBe(1);
        const absent = await statusOfSource({ kind: "stack", stack: "prod" }, { pulumiBin: path.join(pki.dir, "no-such-pulumi"), timeoutMs: 1000 });
        expect(absent.error).toContain("not found: install the Pulumi CLI, or name it with --pulumi <bin> or PULUMI_BIN");
    } finally {
        if (backendBefore === undefined) delete process.env.PULUMI_BACKEND_URL;
        else process.env.PULUMI_BACKEND_URL = backendBefore;
    }
});

it("end to end: the script with --outputs, no VAULT_TOKEN (a ~/.vault-token present): exit 0, no token sent", async () => {
    const apps = [await app("app-a"), await app("app-b")];
    const file = pki.writeFile("outputs.json", JSON.stringify(outputsOf(apps)));
    const home = fs.mkdtempSync(path.join(pki.dir, "home-"));
    fs.writeFileSync(path.join(home, ".vault-token"), "s.should-never-be-sent", { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, VAULT_CACERT: listenerCaFile };
    delete env.VAULT_TOKEN;
    const before = vault.requests.length;
    // Not spawnSync: the fake Vault and the listeners answer from this process's event loop.
    const run = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn("npx", ["ts-node", "--transpile-only", "scripts/status.ts", "--outputs", file], { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.once("error", reject);
        child.once("close", (status) => resolve({ status, stdout, stderr }));
    });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const lines = run.stdout.split("\n");
    expect(lines[0]).toContain("== stack outputs.json (outputs file ");
    for (const a of apps) expect(lines.find((l) => l.startsWith(`${a.name} `))).toMatch(/  OK$/);
    const seen = vault.requests.slice(before);
    expect(seen.map((r) => r.path)).toEqual(expect.arrayContaining(["pki/cert/ca_chain", "sys/health", `pki/cert/${serialOf(apps[1].agent)}`, `pki/cert/${serialOf(apps[1].leaf)}`]));
    expect(seen.filter((r) => r.headers["x-vault-token"] !== undefined)).toEqual([]);
    expect(seen.every((r) => r.method === "GET")).toBe(true);
}, 90_000);
