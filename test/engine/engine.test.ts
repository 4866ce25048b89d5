// The engine tier (`npm run test:engine`): this program under the real Pulumi
// CLI and the real vault and command plugins (test/support/engine.ts), on the
// same sandbox the rehearsal uses (a real Vault, real users and agents, nginx per
// app and the edge proxy). Not part of `npm test`: it needs the engine
// (scripts/get-pulumi-engine.sh) and the plugins (scripts/get-pulumi-plugins.sh).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseCertificate } from "../../providers/pem";
import { rehearse } from "../../scripts/lib/rehearsal";
import { applyProgram, ApplierState, AppliedStep } from "../support/applier";
import { EngineStack, EngineTools, findEngine, writeShadowProject, engineEnv } from "../support/engine";
import { REPO_ROOT, withEpoch } from "../support/harness";
import { runningAsRoot } from "../support/hostUsers";
import { privateKeyNeedles } from "../support/keyNeedles";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { planServing } from "../support/serving";
import { renamedLocalStack, writeThreeAppRehearsalStack } from "../support/stacks";
import { startProber, ProbeTarget } from "../support/tlsProber";
import { enabledAuthMethods, testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";
import { spawnSync } from "child_process";

const vault = testVaultFromEnv();
const found = findEngine();
if (!found.tools) throw new Error(`engine tier: ${found.missing}`);
const tools: EngineTools = found.tools;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-engine-it-"));
fs.chmodSync(tmp, 0o755);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Figures the README quotes: seconds per phase, failed handshakes, checkpoint bytes. */
const figures: string[] = [];
const figure = (line: string) => {
    figures.push(line);
    process.stdout.write(`engine figure: ${line}\n`);
};
afterAll(() => {
    if (figures.length > 0) process.stdout.write(`\nengine tier figures (pulumi ${tools.version}):\n${figures.map((f) => `  ${f}`).join("\n")}\n`);
});

type Report = Record<string, Record<string, unknown>>;

/** What a custom resource's step was, as `action name` (sorted): engine and applier lists compare equal. */
const stepList = (steps: AppliedStep[]) => steps.map((s) => `${s.action} ${s.type} ${s.name}`).sort();
const changed = (steps: AppliedStep[]) => steps.filter((s) => s.action !== "same");

describe("every committed stack passes the CLI's config validation; a config error is one line per problem", () => {
    const stackFiles = [
        ...fs.readdirSync(REPO_ROOT).filter((f) => /^Pulumi\..+\.yaml$/.test(f)).map((f) => path.join(REPO_ROOT, f)),
        ...fs.readdirSync(path.join(REPO_ROOT, "test", "stacks")).map((f) => path.join(REPO_ROOT, "test", "stacks", f)),
    ];

    test.each(stackFiles.map((f) => [path.relative(REPO_ROOT, f), f]))("pulumi preview --stack of %s", (_name, file) => {
        const stack = path.basename(file).replace(/^Pulumi\./, "").replace(/\.yaml$/, "");
        const dir = path.join(tmp, `validate-${stack}`);
        fs.mkdirSync(path.join(dir, "project"), { recursive: true });
        fs.mkdirSync(path.join(dir, "backend"), { recursive: true });
        writeShadowProject(path.join(dir, "project"));
        const text = fs.readFileSync(file, "utf8");
        const stackFile = path.join(dir, "project", `Pulumi.${stack}.yaml`);
        fs.writeFileSync(stackFile, text);
        // A runner without the stack's secrets or its CA file: the CLI must let the program start, and
        // the program must stop with its own config problems, printed once each, without a stack trace.
        const env = { ...engineEnv(tools, path.join(dir, "backend"), "") };
        delete (env as Record<string, string>).VAULT_TOKEN;
        const cli = (args: string[]) => spawnSync(path.join(tools.cliDir, "pulumi"), [...args, "--non-interactive", "--color", "never"], { cwd: path.join(dir, "project"), env, encoding: "utf8", timeout: 300_000 });
        const init = cli(["stack", "init", stack]);
        expect(init.status).toBe(0);
        // A stack that imports its ESC environment (prod) cannot be opened by a file backend: the
        // CLI says so before the program starts. Pulumi Cloud is not reachable here, so the rest is
        // checked without the import (the program then sees no VAULT_CACERT, as a runner without ESC).
        if (/^environment:/m.test(text)) {
            const refused = cli(["preview", "--stack", stack]);
            expect(refused.status).not.toBe(0);
            expect(`${refused.stdout}\n${refused.stderr}`).toMatch(/does not support environments; Pulumi ESC environments require the Pulumi Cloud backend/);
            fs.writeFileSync(stackFile, text.replace(/^environment:\n(?:\s+- .*\n)+/m, ""));
        }
        const r = cli(["preview", "--stack", stack]);
        const out = `${r.stdout}\n${r.stderr}`;
        expect(out).not.toMatch(/validating stack config|missing configuration value/);
        expect(out).toContain("invalid stack configuration:");
        expect(out).not.toMatch(/\n\s+at .*\.(ts|js):\d+/); // no stack trace
        expect(out).not.toContain("unhandled exception");
        expect(out).not.toMatch(/\u001b\[/); // no colour codes
        const problems = out.split("\n").filter((l) => /^\s+- /.test(l)).map((l) => l.trim());
        expect(problems.length).toBeGreaterThan(0);
        expect(new Set(problems).size).toBe(problems.length);
        expect(problems).toContainEqual(expect.stringMatching(/^- vault:caCertFile: (cannot read |required: )/));
        if (stack === "prod") {
            expect(problems.filter((p) => p.includes("sshPrivateKey"))).toEqual(["- vault-rotation:sshPrivateKey: required (secret) because apps[0].host.ssh, apps[1].host.ssh are set"]);
        }
        expect(r.status).not.toBe(0);
    }, 300_000);
});

describe("upgrading a stack whose state holds the cert auth method as a vault.AuthBackend (before CertAuthMount)", () => {
    it("relinquishes the old resource instead of deleting it: the method stays enabled and every agent logs in", async () => {
        const renamed = renamedLocalStack("leg");
        const vaultConfig = { ...JSON.parse(renamed["vault-rotation:vault"]), certAuthPath: "cert-legacy" };
        const sandbox = prepareSandbox({ root: path.join(tmp, "legacy"), config: { ...renamed, "vault-rotation:vault": JSON.stringify(vaultConfig) }, vault });
        try {
            const config = withEpoch(sandbox.config, "leg-1");
            const stack = await EngineStack.create({ tools, stack: "legacy", config, vaultToken: vault.token!, root: path.join(tmp, "legacy-engine") });
            // The old program's shape, as far as the method goes: same project, parent and name.
            const projectFile = path.join(stack.projectDir, "Pulumi.yaml");
            const current = fs.readFileSync(projectFile, "utf8");
            fs.mkdirSync(path.join(stack.projectDir, "legacy"), { recursive: true });
            fs.writeFileSync(
                path.join(stack.projectDir, "legacy", "index.js"),
                [
                    'const pulumi = require("@pulumi/pulumi");',
                    'const vault = require("@pulumi/vault");',
                    "class StackBase extends pulumi.ComponentResource {",
                    '    constructor() { super("vault-rotation:components:StackBase", "vault-rotation", {}); new vault.AuthBackend("vault-rotation-cert-auth", { type: "cert", path: "cert-legacy", description: "old" }, { parent: this }); this.registerOutputs({}); }',
                    "}",
                    "new StackBase();",
                ].join("\n"),
            );
            fs.writeFileSync(projectFile, current.replace(/^main: .*$/m, "main: legacy"));
            const old = await stack.up();
            expect(old.steps.map((s) => `${s.action} ${s.type}`)).toContain("create vault:index/authBackend:AuthBackend");
            fs.writeFileSync(projectFile, current);
            const upgraded = await stack.up();
            expect(upgraded.steps.filter((s) => s.action === "delete").map((s) => `${s.type} ${s.name}`)).toEqual([]);
            expect((await enabledAuthMethods(vault))["cert-legacy/"]?.type).toBe("cert");
            for (const app of ["leg-a", "leg-b"]) {
                const files = sandbox.agentFiles(app);
                const login = await vaultRequest(vault, "POST", "auth/cert-legacy/login", { name: `agent-${app}` }, { token: null, clientCertPem: files.certPem, clientKeyPem: files.keyPem });
                expect({ app, login: login.status }).toEqual({ app, login: 200 });
            }
            // And the next run is a no-op that keeps it so.
            expect(changed((await stack.preview({ expectNoChanges: true })).steps)).toEqual([]);
        } finally {
            sandbox.close();
        }
    }, 900_000);
});

describe("the local stack, served by nginx behind the edge proxy, under the real engine", () => {
    let sandbox: Sandbox;
    let stack: EngineStack;
    let config: Record<string, string>;
    const agentSerials = new Set<string>();
    const leafSerials: string[] = [];

    const up = async (epoch: string, opts: { expectNoChanges?: boolean } = {}) => {
        await stack.setConfig(withEpoch(config, epoch));
        const r = await stack.up(opts);
        for (const a of Object.values(r.outputs.apps as Report)) agentSerials.add(String(a.agentCertSerial));
        return r;
    };
    const targets = (): ProbeTarget[] => [
        ...Object.entries(sandbox.serving!.endpoints).map(([app, endpoint]) => ({ endpoint, serverName: `${app}.internal` })),
        ...(sandbox.serving!.edge ? [{ endpoint: sandbox.serving!.edge.listen, serverName: sandbox.serving!.edge.serverName }] : []),
    ];
    /** Each app's mapping exists in Vault and its agent's files log in there. */
    const expectAgentsLogIn = async () => {
        for (const app of ["eng-a", "eng-b"]) {
            const mapping = await vaultRequest(vault, "GET", `auth/cert/certs/agent-${app}`);
            const files = sandbox.agentFiles(app);
            const login = await vaultRequest(vault, "POST", "auth/cert/login", { name: `agent-${app}` }, { token: null, clientCertPem: files.certPem, clientKeyPem: files.keyPem });
            expect({ app, mapping: mapping.status, login: login.status }).toEqual({ app, mapping: 200, login: 200 });
        }
    };
    const servedSerial = (app: string) => {
        const r = spawnSync("openssl", ["s_client", "-connect", sandbox.serving!.endpoints[app], "-servername", `${app}.internal`], { input: "", encoding: "utf8", timeout: 10_000 });
        const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
        return pem ? parseCertificate(pem).serial : "";
    };

    beforeAll(async () => {
        const renamed = renamedLocalStack("eng");
        const plan = await planServing(vault, "pki_int", ["eng-a", "eng-b"]);
        sandbox = prepareSandbox({ root: path.join(tmp, "local"), config: renamed, vault, serve: plan });
        config = sandbox.config;
        stack = await EngineStack.create({ tools, stack: "local", config: withEpoch(config, "eng-1"), vaultToken: vault.token!, root: path.join(tmp, "local-engine"), log: (l) => process.stdout.write(`${l}\n`) });
    }, 300_000);

    afterAll(() => {
        sandbox?.close();
    });

    it("creates everything, checks every app, and reports both Vault versions", async () => {
        const r = await up("eng-1");
        figure(`local stack (2 apps, served, edge ${sandbox.serving?.edge ? "on" : "off"}): create ${r.seconds.toFixed(1)} s, ${r.steps.length} custom resources`);
        expect(r.steps.length).toBeGreaterThan(20);
        expect(changed(r.steps).every((s) => s.action === "create")).toBe(true);
        const apps = r.outputs.apps as Report;
        for (const app of ["eng-a", "eng-b"]) {
            expect(apps[app].agentVersion).toMatch(/^\d+\.\d+\.\d+/);
            expect(apps[app].serverVersion).toMatch(/^\d+\.\d+\.\d+/);
            expect(apps[app].versionWarning).toBe("");
            expect(apps[app].servedSerial).toBe(apps[app].leafSerial);
            expect(servedSerial(app)).toBe(apps[app].leafSerial);
            leafSerials.push(String(apps[app].leafSerial));
        }
        // The update log holds no certificate text (the certificates are in outputs only).
        expect(r.stdout).not.toContain("BEGIN CERTIFICATE");
        expect(r.stdout).not.toContain("PRIVATE KEY");
    }, 600_000);

    it("previews no change with the same epoch", async () => {
        const p = await stack.preview({ expectNoChanges: true });
        figure(`local stack: no-op preview ${p.seconds.toFixed(1)} s`);
        expect(changed(p.steps)).toEqual([]);
    }, 300_000);

    it("rotates with zero failed TLS handshakes on every endpoint", async () => {
        const before = (await stack.preview()).steps; // (the same epoch: a no-op)
        expect(changed(before)).toEqual([]);
        const prober = startProber(targets());
        const r = await up("eng-2");
        const counts = await prober.stop();
        figure(`local stack: rotation up ${r.seconds.toFixed(1)} s; handshakes ${counts.map((c) => `${c.endpoint} ${c.handshakes} (${c.failures} failed)`).join(", ")}`);
        for (const c of counts) {
            expect(c.handshakes).toBeGreaterThan(10);
            expect({ endpoint: c.endpoint, failures: c.failures, errors: c.errors }).toEqual({ endpoint: c.endpoint, failures: 0, errors: [] });
        }
        const apps = r.outputs.apps as Report;
        for (const app of ["eng-a", "eng-b"]) {
            expect(leafSerials).not.toContain(apps[app].leafSerial);
            expect(servedSerial(app)).toBe(apps[app].leafSerial);
        }
        // After the update has ended (replaced objects deleted), every agent still logs in with its new files.
        await expectAgentsLogIn();
        expect(changed(r.steps).some((s) => s.action === "replace" && s.name === "eng-a-agent-keygen")).toBe(true);
    }, 600_000);

    it("recovers from a rotation killed with SIGKILL mid-way the way the operator guide says", async () => {
        await stack.setConfig(withEpoch(config, "eng-3"));
        const calls = path.join(sandbox.systemctlDir("eng-a"), "calls.log");
        const restarts = () => (fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").split("\n").filter((l) => l.includes(" restart ")).length : 0);
        const restartsBefore = restarts();
        // Killed once eng-a's rotate unit restarted its agent: mid-rotation, with steps in flight.
        const killed = await stack.upKilledWhen(() => restarts() > restartsBefore);
        expect(killed.killed).toBe(true);
        // The next update is refused: the killed one still holds the file backend's lock.
        const locked = stack.cli(["up", "--yes", "--skip-preview"]);
        expect(locked.status).not.toBe(0);
        expect(`${locked.stdout}${locked.stderr}`).toMatch(/locked/);
        // What docs/OPERATIONS.md tells the operator: cancel, then (if the CLI asks) refresh clearing pending creates, then up.
        const recoveryStarted = Date.now();
        const cancel = stack.cli(["cancel", "--yes"]);
        expect(cancel.status).toBe(0);
        const commands = ["pulumi cancel"];
        let r = stack.cli(["up", "--yes", "--skip-preview", "--continue-on-error"]);
        commands.push("pulumi up");
        if (r.status !== 0 && /clear-pending-creates|pending operation/.test(`${r.stdout}${r.stderr}`)) {
            const refresh = stack.cli(["refresh", "--yes", "--clear-pending-creates", "--skip-preview"]);
            expect(refresh.status).toBe(0);
            r = stack.cli(["up", "--yes", "--skip-preview", "--continue-on-error"]);
            commands.push("pulumi refresh --clear-pending-creates", "pulumi up");
        }
        figure(`SIGKILL mid-rotation: converged with ${commands.join(", ")} in ${((Date.now() - recoveryStarted) / 1000).toFixed(1)} s`);
        expect({ status: r.status, output: r.status === 0 ? "" : `${r.stdout}\n${r.stderr}`.slice(-3000) }).toEqual({ status: 0, output: "" });
        const converged = await up("eng-3", { expectNoChanges: false });
        const apps = converged.outputs.apps as Report;
        for (const app of ["eng-a", "eng-b"]) expect(servedSerial(app)).toBe(apps[app].leafSerial);
        // Every agent cert this stack replaced is revoked; only the current ones are not.
        const current = new Set(Object.values(apps).map((a) => String(a.agentCertSerial)));
        for (const serial of agentSerials) {
            const cert = await vaultRequest<{ data?: { revocation_time?: number } }>(vault, "GET", `pki_int/cert/${serial}`);
            expect({ serial, revoked: Number(cert.body.data?.revocation_time ?? 0) > 0 }).toEqual({ serial, revoked: !current.has(serial) });
        }
        await expectAgentsLogIn();
        const noop = await stack.preview({ expectNoChanges: true });
        expect(changed(noop.steps)).toEqual([]);
    }, 900_000);

    it("sees Vault-side drift on refresh and repairs it on the next up", async () => {
        const policy = "eng-a-marker";
        const original = await vaultRequest<{ data?: { policy?: string } }>(vault, "GET", `sys/policies/acl/${policy}`);
        const text = original.body.data?.policy ?? "";
        expect(text).not.toBe("");
        await vaultRequest(vault, "PUT", `sys/policies/acl/${policy}`, { policy: 'path "secret/*" { capabilities = ["read"] }' });
        const refresh = await stack.refresh();
        expect(refresh.steps.filter((s) => s.action === "update").map((s) => s.name)).toContain("eng-a-agent-marker-policy");
        const repair = await stack.up();
        expect(changed(repair.steps).map((s) => `${s.action} ${s.name}`)).toContain("update eng-a-agent-marker-policy");
        const now = await vaultRequest<{ data?: { policy?: string } }>(vault, "GET", `sys/policies/acl/${policy}`);
        expect(now.body.data?.policy).toBe(text);
        await expectAgentsLogIn();
    }, 600_000);

    it("with --continue-on-error, a plant in one app's home fails that app and the update, and the other app rotates", async () => {
        const home = sandbox.home("eng-b");
        const asB = (cmd: string) =>
            runningAsRoot() ? spawnSync("runuser", ["-u", sandbox.user("eng-b").name, "--", "/bin/sh", "-c", cmd]) : spawnSync("/bin/sh", ["-c", cmd]);
        const before = { a: parseCertificate(sandbox.agentFiles("eng-a").certPem).serial, b: parseCertificate(sandbox.agentFiles("eng-b").certPem).serial, servedA: servedSerial("eng-a") };
        expect(asB(`mv ${home}/vault ${home}/vault.real && ln -s ${home}/vault.real ${home}/vault`).status).toBe(0);
        await stack.setConfig(withEpoch(config, "eng-4"));
        const failed = await stack.up({ continueOnError: true }).then(
            () => undefined,
            (e: unknown) => String(e),
        );
        expect(failed).toMatch(/eng-b: agent-keygen: refusing .*\/vault: it is a symbolic link/);
        // eng-a was rotated and checked all the same: a new agent cert that logs in, a new leaf served,
        // and its replaced agent cert revoked in this very update (the engine still runs the deletes
        // of replacements that succeeded).
        const aNow = sandbox.agentFiles("eng-a");
        expect(parseCertificate(aNow.certPem).serial).not.toBe(before.a);
        const oldA = await vaultRequest<{ data?: { revocation_time?: number } }>(vault, "GET", `pki_int/cert/${before.a}`);
        expect(Number(oldA.body.data?.revocation_time ?? 0)).toBeGreaterThan(0);
        expect(servedSerial("eng-a")).not.toBe(before.servedA);
        const login = await vaultRequest(vault, "POST", "auth/cert/login", { name: "agent-eng-a" }, { token: null, clientCertPem: aNow.certPem, clientKeyPem: aNow.keyPem });
        expect(login.status).toBe(200);
        // eng-b keeps its agent cert until the plant is gone; then the next up rotates it too.
        expect(parseCertificate(sandbox.agentFiles("eng-b").certPem).serial).toBe(before.b);
        expect(asB(`rm ${home}/vault && mv ${home}/vault.real ${home}/vault`).status).toBe(0);
        const healed = await stack.up();
        expect(changed(healed.steps).map((s) => `${s.action} ${s.name}`)).toEqual(expect.arrayContaining(["replace eng-b-agent-keygen", "replace eng-b-check"]));
        await expectAgentsLogIn();
    }, 600_000);

    it("repairs drift in a plain `up` run with PULUMI_OPTION_REFRESH=true, as the Deployment settings run it", async () => {
        const policy = "eng-b-marker";
        const original = await vaultRequest<{ data?: { policy?: string } }>(vault, "GET", `sys/policies/acl/${policy}`);
        await vaultRequest(vault, "PUT", `sys/policies/acl/${policy}`, { policy: 'path "secret/*" { capabilities = ["read"] }' });
        const r = stack.cli(["up", "--yes", "--skip-preview"], 600_000, { PULUMI_OPTION_REFRESH: "true" });
        expect(r.status).toBe(0);
        const now = await vaultRequest<{ data?: { policy?: string } }>(vault, "GET", `sys/policies/acl/${policy}`);
        expect(now.body.data?.policy).toBe(original.body.data?.policy);
    }, 600_000);

    it("refuses `pulumi destroy`: the cert auth method is protected, and every agent keeps logging in", async () => {
        const r = stack.cli(["destroy", "--yes", "--skip-preview"]);
        expect(r.status).not.toBe(0);
        expect(`${r.stdout}\n${r.stderr}`).toMatch(/vault-rotation-cert-auth.*protect|protected/is);
        expect((await enabledAuthMethods(vault))["cert/"]?.type).toBe("cert");
        await expectAgentsLogIn();
    }, 600_000);

    it("keeps no plain secret and no agent key in the checkpoint", () => {
        // (Runs after every update above: each checkpoint the file backend wrote is the same file, rewritten.)
        const checkpoint = stack.checkpointText();
        figure(`local stack: checkpoint ${checkpoint.length.toLocaleString("en-US")} bytes (2 apps)`);
        const seed = JSON.parse(config["vault-rotation:kvSeedData"]) as Record<string, Record<string, string>>;
        for (const value of Object.values(seed).flatMap((o) => Object.values(o))) expect(checkpoint).not.toContain(`"${value}"`);
        for (const app of ["eng-a", "eng-b"]) {
            const key = sandbox.agentFiles(app).keyPem;
            expect(privateKeyNeedles(key).filter((n) => checkpoint.includes(n))).toEqual([]);
        }
    });
});

describe("the applier stays equal to the engine", () => {
    it("plans the same steps as the engine for create, rotation and no-op", async () => {
        // The same stack, twice, on one Vault: two name prefixes keep their Vault objects apart,
        // and Pulumi resource names do not carry the prefix, so the step lists compare as they are.
        const base = renamedLocalStack("cmp");
        const run = async (prefix: string, perform: (config: Record<string, string>, epoch: string) => Promise<AppliedStep[]>) => {
            const vaultCfg = { ...JSON.parse(base["vault-rotation:vault"]), certAuthPath: `cert-${prefix}` };
            const sb = prepareSandbox({ root: path.join(tmp, `cmp-${prefix}`), config: { ...base, "vault-rotation:namePrefix": prefix, "vault-rotation:vault": JSON.stringify(vaultCfg) }, vault });
            try {
                const lists: string[][] = [];
                for (const epoch of ["cmp-1", "cmp-2", "cmp-2"]) lists.push(stepList(await perform(sb.config, epoch)));
                return lists;
            } finally {
                sb.close();
            }
        };
        let engineStack: EngineStack | undefined;
        const engine = await run("eng", async (cfg, epoch) => {
            if (!engineStack) engineStack = await EngineStack.create({ tools, stack: "cmp", config: withEpoch(cfg, epoch), vaultToken: vault.token!, root: path.join(tmp, "cmp-engine") });
            else await engineStack.setConfig(withEpoch(cfg, epoch));
            return (await engineStack.up()).steps;
        });
        let state: ApplierState | undefined;
        const applier = await run("apl", async (cfg, epoch) => {
            const r = await applyProgram({ config: withEpoch(cfg, epoch), state, vault, stack: "cmp" });
            state = r.state;
            return r.steps;
        });
        expect(engine[0].length).toBeGreaterThan(20);
        expect({ create: applier[0], rotation: applier[1], noop: applier[2] }).toEqual({ create: engine[0], rotation: engine[1], noop: engine[2] });
    }, 900_000);
});

describe("the rehearsal under the engine", () => {
    it("rehearses the three-app stack (one app over ssh, served, behind the edge proxy) with pulumi", async () => {
        const file = writeThreeAppRehearsalStack(path.join(tmp, "Pulumi.three.yaml"));
        const started = Date.now();
        const report = await rehearse({ stackFile: file, sandboxDir: path.join(tmp, "three"), engine: "pulumi" });
        figure(`three-app rehearsal (web, jobs local; api over ssh; ${runningAsRoot() ? "edge on" : "no edge"}): ${((Date.now() - started) / 1000).toFixed(1)} s`);
        expect(report.failures).toEqual([]);
        expect(report.engine).toBe(`pulumi ${tools.version} (file backend)`);
        for (const v of report.versions) expect(v).toMatchObject({ agent: report.vaultVersion, server: report.vaultVersion, warning: "" });
        // The ssh key is a secret: never in plain text in the checkpoints.
        const checkpoint = fs.readFileSync(path.join(tmp, "three", "engine", "backend", ".pulumi", "stacks", "vault-rotation", "local.json"), "utf8");
        expect(checkpoint).not.toMatch(/OPENSSH PRIVATE KEY-----(\\n|\n)[A-Za-z0-9+/]{16}/);
        expect(report.noop).toEqual({ replaced: [], changed: [], restarts: 0 });
        expect(report.emergency).toMatchObject({ previousLeafRevoked: true, newLeafServed: true, othersChanged: [], otherRestarts: 0 });
        // Between rotations, under the engine: every app's verification ran and nothing else, no restart, no reload.
        const apps = report.apps.map((a) => a.app);
        expect([...report.between.verified.changed].sort()).toEqual(apps.flatMap((a) => [`replace ${a}-verification`, `replace ${a}-verified`, `replace ${a}-verify`]).sort());
        expect(report.between.verified).toMatchObject({ restarts: 0, reloads: 0 });
        for (const t of report.between.textfiles) expect(t).toMatchObject({ ok: true });
        expect(report.between.status).toMatchObject({ healthyExit: 0, listsEveryApp: true });
        if (report.between.swapped) {
            expect(report.between.swapped).toMatchObject({ namesBothSerials: true, namesEndpoint: true, recovered: true });
            expect(report.between.status).toMatchObject({ expiredExit: 1, expiredNamesApp: true });
        }
    }, 1_200_000);
});
