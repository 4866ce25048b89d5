// The rehearsal: a complete rotation of every app of a stack, for real, on this
// machine (ssh hosts must be loopback ones; a real sshd stands in for them): a throwaway Vault dev-TLS server, the program evaluated and
// performed by the applier, real Vault Agents (started by the systemctl shim)
// rendering the leaf and firing the post-hook (podman shim), the program's own
// checks, then a rotation and a no-op run. The checklist at the end is verified
// independently of the program's RotationCheck, in the runbook's words.
import { spawnSync } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { parseCertificate } from "../../providers/pem";
import { defaultMetricsTextfile, vaultNames } from "../../lib/naming";
import { readTextfile } from "../../test/support/prometheus";
import { loadStackConfig, REPO_ROOT, withEpoch } from "../../test/support/harness";
import { privateKeyNeedles } from "../../test/support/keyNeedles";
import { EngineChoice, ProgramRun, programRunner, ProgramRunner } from "../../test/support/runner";
import { openSandbox, Sandbox } from "../../test/support/sandbox";
import { planServing } from "../../test/support/serving";
import { fingerprint } from "../../test/support/sshExec";
import { setupProductionLikeVault, vaultRequest } from "../../test/support/vaultAdmin";
import { startVaultServer, VaultServer } from "../../test/support/vaultServer";

export interface RehearsalOptions {
    /** Stack file (default: Pulumi.local.yaml in the repo). */
    stackFile?: string;
    /** Sandbox directory (default: .rehearsal in the repo). */
    sandboxDir?: string;
    /** Remove the sandbox at the end. */
    clean?: boolean;
    /** Progress lines. */
    log?: (line: string) => void;
    /** Serve for real with nginx (default true); false checks files only. */
    serve?: boolean;
    /** Who performs the program: the real Pulumi engine or the applier (default: the engine when installed). */
    engine?: EngineChoice;
}

export interface CheckItem {
    item: string;
    ok: boolean;
    detail: string;
}

export interface AppReport {
    app: string;
    checklist: CheckItem[];
    agentSerial: string;
    leafSerial: string;
    leafNotAfter: string;
    rotated?: {
        agentSerial: string;
        leafSerial: string;
        leafNotAfter: string;
        oldAgentRevoked: boolean;
        oldAgentLoginRefused: boolean;
        newAgentLoginWorks: boolean;
        /** A new agent key on the host, and no line of the old or the new one in any resource's state. */
        newKeyOnlyOnHost: boolean;
        /** What a client is served after the rotation (openssl s_client), or undefined when not serving. */
        served?: ServedFacts;
        leafReRendered: boolean;
    };
}

export interface RehearsalReport {
    ok: boolean;
    stackFile: string;
    sandbox: string;
    vaultVersion: string;
    /** Who performed the program: `pulumi v3.274.1 (file backend)` or `applier (why)`. */
    engine: string;
    /** Per app, after the rotation: the agent's and the server's Vault version as the program's check read them. */
    versions: { app: string; agent: string; server: string; warning: string }[];
    /** Which user model the host steps ran under (real users as root, else the current user). */
    userMode: string;
    epochs: { first: string; rotated: string };
    apps: AppReport[];
    noop: { replaced: string[]; changed: string[]; restarts: number };
    /** One app rotated alone (its own `apps[i].epoch`), as in an emergency: what changed for it and for the others. */
    emergency: { app: string; epoch: string; agentSerial: string; leafSerial: string; previousLeafRevoked: boolean; newLeafServed: boolean; othersUnchanged: string[]; othersChanged: string[]; otherRestarts: number };
    /** Later verification windows with nothing to rotate: what ran, what was restarted, what the textfiles and the status command say. */
    between: BetweenRotations;
    versionWarnings: string[];
    failures: string[];
}

export interface BetweenRotations {
    /** Steps the verification run changed, and agent restarts and container reloads it caused. */
    verified: { changed: string[]; restarts: number; reloads: number; verifiedAt: Record<string, string> };
    /** Per app, the textfile as Prometheus parses it: leaf and agent notAfter equal the files', last verification passed. */
    textfiles: { app: string; ok: boolean; detail: string }[];
    /** An older leaf put in place (file and server) behind the program's back: the run's failure, then a run once it is back. */
    swapped?: { app: string; oldSerial: string; currentSerial: string; failure: string; namesBothSerials: boolean; namesEndpoint: boolean; recovered: boolean };
    /** `npm run status` on the outputs: exit codes while healthy and with an expired leaf served. */
    status: { healthyExit: number | null; listsEveryApp: boolean; expiredExit?: number | null; expiredNamesApp?: boolean; output: string };
}

const MARKER = ".vault-rotation-rehearsal";

/** Creates (or safely re-creates) the sandbox: only a directory we made before is ever wiped. */
function freshSandbox(dir: string): void {
    if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) {
        if (!fs.existsSync(path.join(dir, MARKER))) {
            throw new Error(`refusing to use ${dir}: it is not empty and was not made by a rehearsal (no ${MARKER} file)`);
        }
        fs.rmSync(dir, { recursive: true, force: true });
    }
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, MARKER), "made by npm run rehearse; safe to delete\n");
}

function readLines(file: string): string[] {
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : [];
}

type Report = Record<string, Record<string, unknown>>;

export async function rehearse(opts: RehearsalOptions = {}): Promise<RehearsalReport> {
    const log = opts.log ?? (() => undefined);
    const stackFile = path.resolve(opts.stackFile ?? path.join(REPO_ROOT, "Pulumi.local.yaml"));
    const sandboxDir = path.resolve(opts.sandboxDir ?? path.join(REPO_ROOT, ".rehearsal"));
    const failures: string[] = [];
    let server: VaultServer | undefined;
    let sandbox: Sandbox | undefined;
    let runner: ProgramRunner | undefined;

    // Ctrl-C: stop the agents and the sshd we started (the server module stops its own server).
    const onSignal = () => {
        process.stderr.write("\nrehearse: interrupted; stopping the Vault Agents and the Vault server it started\n");
        sandbox?.close();
        void server?.stop().finally(() => process.exit(130));
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);

    try {
        const baseConfig = loadStackConfig(stackFile);
        const vaultConfig = JSON.parse(baseConfig["vault-rotation:vault"] ?? "{}") as { pkiMount?: string; issuerCommonName?: string; kvMount?: string };

        log("[1/10] starting a throwaway Vault dev-TLS server (first run builds Vault: many minutes)");
        freshSandbox(sandboxDir);
        server = await startVaultServer({ log: (l) => log(`      ${l}`) });
        await setupProductionLikeVault(server, { pkiMount: vaultConfig.pkiMount, issuerCommonName: vaultConfig.issuerCommonName, kvV2Mount: vaultConfig.kvMount });
        log(`      Vault ${server.version} at ${server.address}: PKI root + intermediate "${vaultConfig.issuerCommonName}", KV v2 at ${vaultConfig.kvMount}`);
        const vault = { address: server.address, caCertFile: server.caCertFile, token: server.token };

        log(`[2/10] laying out the sandbox ${sandboxDir} (homes, systemctl and podman shims; sshd for ssh hosts${opts.serve === false ? "" : "; nginx per app and, as root, an nginx edge proxy"})`);
        const appNames = (JSON.parse(baseConfig["vault-rotation:apps"]) as { name: string }[]).map((a) => a.name);
        const plan = opts.serve === false ? undefined : await planServing(vault, vaultConfig.pkiMount ?? "pki_int", appNames);
        sandbox = await openSandbox({ root: sandboxDir, config: baseConfig, vault: { ...vault, vaultBin: server.vaultBin }, serve: plan });
        const sb = sandbox;
        if (sb.sshd) {
            const ssh = sb.stack.apps.filter((a) => "ssh" in a.host).map((a) => a.name);
            log(`      sshd on ${sb.sshd.listen.join(", ")} port ${sb.sshd.port} (pinned host key ${fingerprint(sb.sshd.hostKey)}) for ${ssh.join(", ")}: logins as each app's user`);
        }
        const apps = sb.stack.apps.map((a) => a.name);
        log(`      host steps run as: ${sb.mode}${sb.stack.apps.map((a) => `; ${a.name} as ${sb.user(a.name).name} (uid ${sb.user(a.name).uid})`).join("")}`);
        const rotation = JSON.parse(sb.config["vault-rotation:rotation"]) as { epoch?: string };
        const firstEpoch = rotation.epoch ?? "rehearsal-1";
        const rotatedEpoch = `${firstEpoch}-rotated`;
        runner = programRunner({ choice: opts.engine, vault, stack: "local", workDir: sandboxDir, log: (l) => log(`      ${l}`) });
        log(`      engine: ${runner.engine}`);
        const r = runner;
        const apply = async (epoch: string): Promise<ProgramRun> => r.up(withEpoch(sb.config, epoch));

        log(`[3/10] first run, epoch ${firstEpoch}: every declared Vault object and host step, for ${apps.join(", ")}`);
        const first = await apply(firstEpoch);
        const firstReport = first.exports.apps as Report;

        // The chain a client verifies served certificates against: the PKI's, as Vault has it.
        const chainFile = path.join(sandboxDir, "issuing-chain.pem");
        const chain = await vaultRequest<{ data?: { certificate?: string } }>(vault, "GET", `${sb.stack.vault.pkiMount}/cert/ca_chain`, undefined, { token: null });
        fs.writeFileSync(chainFile, chain.body.data?.certificate ?? "");
        if (sb.serving) {
            log(`      serving: ${Object.entries(sb.serving.endpoints).map(([a, e]) => `${a} at ${e}`).join(", ")}; edge proxy ${sb.serving.edge ? `at ${sb.serving.edge.listen} as ${sb.serving.edge.user.name}` : "not run (it needs a user of its own: run as root)"}`);
        }

        log("[4/10] checking each app in the runbook's words");
        const appReports: AppReport[] = [];
        for (const app of sb.stack.apps) {
            const checklist = await checkApp(sb, app, vault, chainFile, String(firstReport[app.name].leafSerial));
            appReports.push({
                app: app.name,
                checklist,
                agentSerial: String(firstReport[app.name].agentCertSerial),
                leafSerial: String(firstReport[app.name].leafSerial),
                leafNotAfter: String(firstReport[app.name].leafNotAfter),
            });
            for (const c of checklist) if (!c.ok) failures.push(`${app.name}: ${c.item}: ${c.detail}`);
        }

        log(`[5/10] rotating: epoch ${firstEpoch} -> ${rotatedEpoch}`);
        const oldAgent = Object.fromEntries(
            sb.stack.apps.map((a) => {
                const files = sb.agentFiles(a.name);
                return [a.name, { cert: files.certPem, key: files.keyPem }];
            }),
        );
        const rotated = await apply(rotatedEpoch);
        const rotatedReport = rotated.exports.apps as Report;
        // Every resource's inputs and outputs of both runs (the engine's checkpoints): where no agent key may be.
        const stateText = rotated.stateText;
        for (const [i, app] of sb.stack.apps.entries()) {
            const before = appReports[i];
            const now = rotatedReport[app.name];
            const oldSerial = before.agentSerial;
            const cert = await vaultRequest(vault, "GET", `${sb.stack.vault.pkiMount}/cert/${oldSerial}`);
            const revokedAt = Number((cert.body as { data?: { revocation_time?: number } }).data?.revocation_time ?? 0);
            const oldLogin = await vaultRequest(vault, "POST", `auth/${sb.stack.vault.certAuthPath}/login`, { name: `agent-${app.name}` }, {
                token: null,
                clientCertPem: oldAgent[app.name].cert,
                clientKeyPem: oldAgent[app.name].key,
            });
            const newLogin = await login(sb, app, vault);
            const newKey = sb.agentFiles(app.name).keyPem;
            const keyInState = [oldAgent[app.name].key, newKey].some((k) => privateKeyNeedles(k).some((needle) => stateText.includes(needle)));
            const leafNow = parseCertificate(fs.readFileSync(path.join(app.home, "tls", `${app.name}.fullchain.pem`), "utf8")).serial;
            before.rotated = {
                agentSerial: String(now.agentCertSerial),
                leafSerial: String(now.leafSerial),
                leafNotAfter: String(now.leafNotAfter),
                oldAgentRevoked: revokedAt > 0,
                oldAgentLoginRefused: oldLogin.status >= 400,
                newAgentLoginWorks: newLogin.ok,
                newKeyOnlyOnHost: newKey !== oldAgent[app.name].key && !keyInState,
                leafReRendered: leafNow === String(now.leafSerial) && leafNow !== before.leafSerial,
                served: sb.serving ? probeServed(sb, app, chainFile) : undefined,
            };
            const r = before.rotated;
            if (r.agentSerial === before.agentSerial) failures.push(`${app.name}: rotation: agent serial unchanged`);
            if (!r.oldAgentRevoked) failures.push(`${app.name}: rotation: old agent cert ${oldSerial} not revoked`);
            if (!r.oldAgentLoginRefused) failures.push(`${app.name}: rotation: old agent cert still logs in`);
            if (!r.newAgentLoginWorks) failures.push(`${app.name}: rotation: new agent cert does not log in (${newLogin.detail})`);
            if (!r.newKeyOnlyOnHost) failures.push(`${app.name}: rotation: ${keyInState ? "an agent key is in the state" : "the agent key on the host did not change"}`);
            if (!r.leafReRendered) failures.push(`${app.name}: rotation: the agent did not render a new leaf`);
            if (r.served) {
                if (r.served.serial !== r.leafSerial) failures.push(`${app.name}: rotation: ${r.served.endpoint} serves ${r.served.serial || "nothing"} (${r.served.detail}), not the new leaf ${r.leafSerial}`);
                if (r.served.edge && !r.served.edge.ok) failures.push(`${app.name}: rotation: through the edge proxy: ${r.served.edge.detail}`);
            }
        }

        log(`[6/10] running again with epoch ${rotatedEpoch}: nothing may change`);
        /** Agent restarts the systemctl shim recorded for these apps (default: every app). */
        const restartCount = (names = sb.stack.apps.map((a) => a.name)) => names.flatMap((n) => readLines(path.join(sb.systemctlDir(n), "calls.log"))).filter((l) => l.includes(" restart ")).length;
        const restartsBefore = restartCount();
        const again = await apply(rotatedEpoch);
        const restarts = restartCount() - restartsBefore;
        // A run in a later verification window than the last re-verifies (and only that): the rehearsal may straddle one.
        const windowTurned = (again.exports.verificationPlan as { window?: string } | undefined)?.window !== (rotated.exports.verificationPlan as { window?: string } | undefined)?.window;
        const changed = again.steps.filter((s) => s.action !== "same" && !(windowTurned && isVerificationStep(s.name)));
        const noop = { replaced: changed.filter((s) => s.action === "replace").map((s) => s.name), changed: changed.map((s) => `${s.action} ${s.name}`), restarts };
        if (changed.length > 0) failures.push(`no-op run changed: ${noop.changed.join(", ")}`);
        if (restarts > 0) failures.push(`no-op run restarted ${restarts} agent(s)`);

        const versions = sb.stack.apps.map((a) => ({
            app: a.name,
            agent: String(rotatedReport[a.name].agentVersion ?? ""),
            server: String(rotatedReport[a.name].serverVersion ?? ""),
            warning: String(rotatedReport[a.name].versionWarning ?? ""),
        }));
        for (const v of versions) {
            // An empty version means the host's or the server's answer was not understood: drift could not be seen.
            if (v.agent === "") failures.push(`${v.app}: the agent's Vault version was not read (version drift cannot be seen)`);
            if (v.server === "") failures.push(`${v.app}: the server's Vault version was not read (version drift cannot be seen)`);
        }
        const versionWarnings = versions.map((v) => v.warning).filter((w) => w !== "");

        log(`[7/10] one app in an emergency: ${sb.stack.apps[0].name} gets its own epoch, every other app must keep its serials`);
        const target = sb.stack.apps[0];
        const others = sb.stack.apps.slice(1);
        const othersRestartsBefore = restartCount(others.map((a) => a.name));
        const emergencyEpoch = "rehearsal-emergency-1";
        const appsWithEpoch = JSON.parse(sb.config["vault-rotation:apps"]) as Record<string, unknown>[];
        appsWithEpoch[0].epoch = emergencyEpoch;
        const emergencyRun = await r.up({ ...withEpoch(sb.config, rotatedEpoch), "vault-rotation:apps": JSON.stringify(appsWithEpoch) });
        const emergencyReport = emergencyRun.exports.apps as Report;
        const before = rotatedReport[target.name];
        const now = emergencyReport[target.name];
        const oldLeaf = await vaultRequest(vault, "GET", `${sb.stack.vault.pkiMount}/cert/${String(before.leafSerial)}`);
        const previousLeafRevoked = Number((oldLeaf.body as { data?: { revocation_time?: number } }).data?.revocation_time ?? 0) > 0;
        const servedNow = sb.serving ? probeServed(sb, target, chainFile) : undefined;
        const emergency = {
            app: target.name,
            epoch: emergencyEpoch,
            agentSerial: `${String(before.agentCertSerial)} -> ${String(now.agentCertSerial)}`,
            leafSerial: `${String(before.leafSerial)} -> ${String(now.leafSerial)}`,
            previousLeafRevoked,
            newLeafServed: servedNow ? servedNow.serial === String(now.leafSerial) : true,
            othersUnchanged: others.filter((a) => emergencyReport[a.name].agentCertSerial === rotatedReport[a.name].agentCertSerial && emergencyReport[a.name].leafSerial === rotatedReport[a.name].leafSerial).map((a) => a.name),
            othersChanged: others.filter((a) => emergencyReport[a.name].agentCertSerial !== rotatedReport[a.name].agentCertSerial || emergencyReport[a.name].leafSerial !== rotatedReport[a.name].leafSerial).map((a) => a.name),
            otherRestarts: restartCount(others.map((a) => a.name)) - othersRestartsBefore,
        };
        if (now.agentCertSerial === before.agentCertSerial || now.leafSerial === before.leafSerial) failures.push(`${target.name}: emergency: its own epoch did not rotate it (${emergency.agentSerial}; ${emergency.leafSerial})`);
        if (!previousLeafRevoked) failures.push(`${target.name}: emergency: the previous leaf ${String(before.leafSerial)} was not revoked`);
        if (!emergency.newLeafServed) failures.push(`${target.name}: emergency: the new leaf is not served (${servedNow?.detail ?? ""})`);
        if (emergency.othersChanged.length > 0) failures.push(`emergency: rotating ${target.name} alone also changed ${emergency.othersChanged.join(", ")}`);
        if (emergency.otherRestarts > 0) failures.push(`emergency: rotating ${target.name} alone restarted ${emergency.otherRestarts} other agent(s)`);

        const between = await betweenRotations(sb, r, vault, { ...withEpoch(sb.config, rotatedEpoch), "vault-rotation:apps": JSON.stringify(appsWithEpoch) }, emergencyReport, log, failures);

        log("[10/10] done");
        return {
            ok: failures.length === 0,
            stackFile,
            sandbox: sandboxDir,
            vaultVersion: server.version,
            engine: runner.engine,
            versions,
            userMode: sandbox.mode,
            epochs: { first: firstEpoch, rotated: rotatedEpoch },
            apps: appReports,
            noop,
            emergency,
            between,
            versionWarnings,
            failures,
        };
    } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        runner?.close();
        sandbox?.close();
        await server?.stop();
        if (opts.clean) fs.rmSync(sandboxDir, { recursive: true, force: true });
    }
}

/** The three steps of an app's verification between rotations. */
function isVerificationStep(name: string): boolean {
    return /-(verify|verification|verified)$/.test(name);
}

/** Writes `text` to `file` as the app's user (owner and mode as the host's own writes). */
function writeAsAppUser(sb: Sandbox, app: string, file: string, text: string): void {
    fs.writeFileSync(file, text, { mode: 0o600 });
    const u = sb.user(app);
    if (process.getuid?.() === 0) fs.chownSync(file, u.uid, u.gid);
}

/** Reloads the app's server the way its post-hook does (the podman shim's container stands for a real nginx). */
function reloadAppServer(sb: Sandbox, app: string): void {
    const r = spawnSync(path.join(REPO_ROOT, "test", "shims", "podman"), ["kill", "--signal", "SIGHUP", `${app}-web`], { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", PODMAN_SHIM_DIR: sb.podmanDir(app), HOME: sb.home(app) }, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`reloading ${app}'s server: ${r.stderr}`);
}

/** podman reloads (`kill`) the shims recorded for every app. */
function reloadCount(sb: Sandbox): number {
    return sb.stack.apps.flatMap((a) => readLines(path.join(sb.podmanDir(a.name), "calls.log"))).filter((l) => l.startsWith("kill ")).length;
}

/** Runs `npm run status` (the script itself) on a stack's outputs; no Vault token in its environment. */
function runStatus(sb: Sandbox, outputs: Record<string, unknown>, vault: { caCertFile: string }): { exit: number | null; output: string } {
    const file = path.join(sb.root, "status-outputs.json");
    fs.writeFileSync(file, JSON.stringify(outputs, null, 2));
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: sb.root, VAULT_CACERT: vault.caCertFile };
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "node_modules", "ts-node", "dist", "bin.js"), "--transpile-only", path.join(REPO_ROOT, "scripts", "status.ts"), "--outputs", file], { cwd: REPO_ROOT, env, encoding: "utf8", timeout: 120_000 });
    return { exit: r.status, output: `${r.stdout}${r.stderr}` };
}

/**
 * Between rotations, as a scheduled run sees it: later verification windows with
 * nothing to rotate (verifyEvery every-run stands in for "a night later").
 * Every app is verified again with no restart and no reload; the textfiles carry
 * the certificates' notAfter; an older leaf put back behind the program's back
 * fails the run naming the endpoint and both serials, and the run after it is
 * put right passes; `npm run status` exits 0, then 1 once an expired leaf is served.
 */
async function betweenRotations(
    sb: Sandbox,
    r: ProgramRunner,
    vault: { address: string; caCertFile: string; token: string },
    config: Record<string, string>,
    lastReport: Report,
    log: (line: string) => void,
    failures: string[],
): Promise<BetweenRotations> {
    const rotation = JSON.parse(config["vault-rotation:rotation"]) as Record<string, unknown>;
    const nightly = { ...config, "vault-rotation:rotation": JSON.stringify({ ...rotation, verifyEvery: "every-run" }) };
    const restartCount = () => sb.stack.apps.flatMap((a) => readLines(path.join(sb.systemctlDir(a.name), "calls.log"))).filter((l) => l.includes(" restart ")).length;

    log("[8/10] a later verification window with nothing to rotate: every app verified again, nothing restarted or reloaded");
    const restartsBefore = restartCount();
    const reloadsBefore = reloadCount(sb);
    const night = await r.up(nightly);
    const nightReport = night.exports.apps as Report;
    const changed = night.steps.filter((s) => s.action !== "same");
    const verified = {
        changed: changed.map((s) => `${s.action} ${s.name}`),
        restarts: restartCount() - restartsBefore,
        reloads: reloadCount(sb) - reloadsBefore,
        verifiedAt: Object.fromEntries(sb.stack.apps.map((a) => [a.name, String((nightReport[a.name].verification as Record<string, unknown>).verifiedAt)])),
    };
    const others = changed.filter((s) => !isVerificationStep(s.name));
    if (others.length > 0) failures.push(`verification run changed more than the verification: ${others.map((s) => `${s.action} ${s.name}`).join(", ")}`);
    for (const a of sb.stack.apps) {
        for (const step of [`${a.name}-verify`, `${a.name}-verification`, `${a.name}-verified`]) {
            if (!changed.some((s) => s.name === step)) failures.push(`${a.name}: the verification run did not run ${step}`);
        }
        const before = String((lastReport[a.name].verification as Record<string, unknown>).verifiedAt);
        if (!(verified.verifiedAt[a.name] > before)) failures.push(`${a.name}: verification.verifiedAt did not move on (${before} -> ${verified.verifiedAt[a.name]})`);
    }
    if (verified.restarts > 0) failures.push(`the verification run restarted ${verified.restarts} agent(s)`);
    if (verified.reloads > 0) failures.push(`the verification run reloaded ${verified.reloads} container(s)`);

    const textfiles = sb.stack.apps.map((a) => {
        const file = a.metricsTextfile ?? defaultMetricsTextfile(a.home, a.name);
        try {
            const m = readTextfile(file);
            const leaf = Date.parse(new X509Certificate(fs.readFileSync(path.join(a.home, "tls", `${a.name}.fullchain.pem`))).validTo) / 1000;
            const agent = Date.parse(new X509Certificate(sb.agentFiles(a.name).certPem).validTo) / 1000;
            const problems = [
                m.value("vault_rotation_cert_not_after_timestamp_seconds", { app: a.name, kind: "leaf" }) === leaf ? "" : "leaf notAfter differs from the served file's",
                m.value("vault_rotation_cert_not_after_timestamp_seconds", { app: a.name, kind: "agent" }) === agent ? "" : "agent notAfter differs from agent.crt's",
                m.value("vault_rotation_last_verification_ok", { app: a.name }) === 1 ? "" : "last verification not ok",
                m.mode === 0o644 && m.dirMode === 0o755 ? "" : `modes ${m.mode.toString(8)}/${m.dirMode.toString(8)}, not 644/755`,
            ].filter((p) => p !== "");
            return { app: a.name, ok: problems.length === 0, detail: problems.length === 0 ? `${file}: leaf and agent notAfter as on the host, verification ok, 0644 in a 0755 directory` : `${file}: ${problems.join("; ")}` };
        } catch (e) {
            return { app: a.name, ok: false, detail: `${file}: ${(e as Error).message}` };
        }
    });
    for (const t of textfiles) if (!t.ok) failures.push(`${t.app}: textfile: ${t.detail}`);

    let swapped: BetweenRotations["swapped"];
    const target = sb.serving ? sb.stack.apps[sb.stack.apps.length - 1] : undefined;
    if (target && sb.serving) {
        log(`[9/10] an older leaf put back behind the program's back on ${target.name}: the verification must fail naming the endpoint and both serials`);
        const fullchain = path.join(target.home, "tls", `${target.name}.fullchain.pem`);
        const previous = `${fullchain}.prev`;
        const current = fs.readFileSync(fullchain, "utf8");
        const old = fs.readFileSync(previous, "utf8");
        const oldSerial = parseCertificate(old).serial;
        const currentSerial = parseCertificate(current).serial;
        writeAsAppUser(sb, target.name, fullchain, old);
        reloadAppServer(sb, target.name);
        let failure = "";
        try {
            await r.up(nightly);
        } catch (e) {
            failure = (e as Error).message;
        }
        writeAsAppUser(sb, target.name, fullchain, current);
        reloadAppServer(sb, target.name);
        let recovered = true;
        try {
            await r.up(nightly);
        } catch (e) {
            recovered = false;
            failures.push(`${target.name}: the run after the leaf was put right failed: ${(e as Error).message.split("\n").slice(0, 4).join(" | ")}`);
        }
        const endpoint = sb.serving.endpoints[target.name];
        swapped = {
            app: target.name,
            oldSerial,
            currentSerial,
            failure: failure.split("\n").filter((l) => l.includes(target.name)).slice(0, 6).join("\n"),
            namesBothSerials: failure.includes(oldSerial) && failure.includes(currentSerial),
            namesEndpoint: failure.includes(endpoint),
            recovered,
        };
        if (failure === "") failures.push(`${target.name}: the verification passed with an older leaf served`);
        else if (!swapped.namesBothSerials || !swapped.namesEndpoint) failures.push(`${target.name}: the verification failure does not name ${!swapped.namesEndpoint ? `the endpoint ${endpoint}` : `both serials ${oldSerial} and ${currentSerial}`}: ${swapped.failure}`);
    }

    const verb = sb.serving ? "; then with an expired leaf served" : "";
    log(`[10/10] npm run status on the outputs${verb}`);
    const finalRun = await r.up(nightly);
    const healthy = runStatus(sb, finalRun.exports, vault);
    const status: BetweenRotations["status"] = { healthyExit: healthy.exit, listsEveryApp: sb.stack.apps.every((a) => healthy.output.split("\n").some((l) => l.startsWith(`${a.name} `))), output: healthy.output };
    if (healthy.exit !== 0) failures.push(`npm run status exited ${healthy.exit} on a healthy stack:\n${healthy.output}`);
    if (!status.listsEveryApp) failures.push(`npm run status does not list every app:\n${healthy.output}`);
    if (target && sb.serving) {
        // A leaf from the app's own role that expires in seconds, served once it has.
        const names = target.leaf.commonName;
        const issued = await vaultRequest<{ data?: { certificate?: string; private_key?: string; ca_chain?: string[] } }>(vault, "POST", `${sb.stack.vault.pkiMount}/issue/${vaultLeafRole(sb, target.name)}`, { common_name: names, ttl: "3s" });
        const d = issued.body.data ?? {};
        const fullchain = path.join(target.home, "tls", `${target.name}.fullchain.pem`);
        const good = fs.readFileSync(fullchain, "utf8");
        await new Promise((res) => setTimeout(res, 4000));
        writeAsAppUser(sb, target.name, fullchain, `${d.certificate}\n${(d.ca_chain ?? []).join("\n")}\n${d.private_key}\n`);
        reloadAppServer(sb, target.name);
        const expired = runStatus(sb, finalRun.exports, vault);
        writeAsAppUser(sb, target.name, fullchain, good);
        reloadAppServer(sb, target.name);
        status.expiredExit = expired.exit;
        status.expiredNamesApp = expired.output.split("\n").some((l) => l.startsWith(`${target.name} `) && l.includes("ATTENTION"));
        status.output = `${healthy.output}\n--- with an expired leaf served by ${target.name} ---\n${expired.output}`;
        if (expired.exit !== 1) failures.push(`npm run status exited ${expired.exit} with an expired leaf served by ${target.name}, not 1:\n${expired.output}`);
        if (!status.expiredNamesApp) failures.push(`npm run status does not flag ${target.name} with an expired leaf served:\n${expired.output}`);
    }
    return { verified, textfiles, swapped, status };
}

/** The app's leaf role as the stack names it (its namePrefix included). */
function vaultLeafRole(sb: Sandbox, app: string): string {
    return vaultNames(app, sb.stack.namePrefix).leafRole;
}

async function login(sb: Sandbox, app: Sandbox["stack"]["apps"][number], vault: { address: string; caCertFile: string; token: string }) {
    const files = sb.agentFiles(app.name);
    const r = await vaultRequest(vault, "POST", `auth/${sb.stack.vault.certAuthPath}/login`, { name: `agent-${app.name}` }, { token: null, clientCertPem: files.certPem, clientKeyPem: files.keyPem });
    const auth = (r.body as { auth?: { client_token?: string; token_policies?: string[] } }).auth;
    if (auth?.client_token) {
        // Only a probe: give the token back.
        await vaultRequest(vault, "POST", "auth/token/revoke-self", {}, { token: auth.client_token });
    }
    return { ok: r.status === 200 && Boolean(auth?.client_token), policies: auth?.token_policies ?? [], detail: r.status === 200 ? "ok" : `HTTP ${r.status}: ${r.text.slice(0, 200)}` };
}

export interface ServedFacts {
    endpoint: string;
    /** Serial of the certificate served there ("" when the handshake failed). */
    serial: string;
    /** openssl's verdict on the served chain against the PKI's issuing chain, or the failure. */
    detail: string;
    /** Through the edge proxy: did a client get the app's answer (the proxy verified the app's leaf)? */
    edge?: { ok: boolean; detail: string };
}

/**
 * What a client is served, asked with openssl (independently of the program's
 * own check): the endpoint's certificate and its verification, and one request
 * through the edge proxy with the app's Host.
 */
function probeServed(sb: Sandbox, app: Sandbox["stack"]["apps"][number], chainFile: string): ServedFacts {
    const endpoint = sb.serving!.endpoints[app.name];
    const sClient = (connect: string, serverName: string, input: string) =>
        spawnSync("openssl", ["s_client", "-connect", connect, "-servername", serverName, "-CAfile", chainFile, "-verify_return_error", "-verify_hostname", serverName, "-ign_eof"], { input, encoding: "utf8", timeout: 10_000 });
    const direct = sClient(endpoint, app.leaf.commonName, "");
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(direct.stdout)?.[0];
    const verify = /Verify return code: (\d+ \([^)]*\))/.exec(direct.stdout)?.[1] ?? (direct.stderr.trim().split("\n").pop() ?? "no answer");
    const facts: ServedFacts = { endpoint, serial: pem && /^0 /.test(verify) ? parseCertificate(pem).serial : "", detail: `verify ${verify}` };
    const edge = sb.serving!.edge;
    if (edge) {
        const r = sClient(edge.listen, edge.serverName, `GET / HTTP/1.1\r\nHost: ${app.leaf.commonName}\r\nConnection: close\r\n\r\n`);
        const status = /^HTTP\/1\.1 (\d{3})/m.exec(r.stdout)?.[1] ?? "no HTTP answer";
        const fromApp = r.stdout.split("\n").some((l) => l.trim() === app.name);
        facts.edge = { ok: status === "200" && fromApp, detail: `${edge.listen} (Host ${app.leaf.commonName}): HTTP ${status}${fromApp ? ` from ${app.name}` : ""}` };
    }
    return facts;
}

/** The runbook's post-rotation checklist for one app, verified from the host files, Vault, the shims and what clients are served. */
async function checkApp(sb: Sandbox, app: Sandbox["stack"]["apps"][number], vault: { address: string; caCertFile: string; token: string }, chainFile: string, leafSerial: string): Promise<CheckItem[]> {
    const items: CheckItem[] = [];
    const fullchainPath = path.join(app.home, "tls", `${app.name}.fullchain.pem`);
    const exists = fs.existsSync(fullchainPath);
    items.push({ item: "*.fullchain.pem exists where expected", ok: exists, detail: fullchainPath });
    if (exists) {
        // The first certificate block is the leaf (the file also holds the chain and the key).
        const leaf = parseCertificate(fs.readFileSync(fullchainPath, "utf8"));
        const notAfter = leaf.notAfter;
        const daysLeft = (notAfter.getTime() - Date.now()) / 86_400_000;
        const cn = leaf.subjectCN;
        const issuer = leaf.issuerCN;
        items.push({ item: "expiry is sane", ok: leaf.notBefore <= new Date() && daysLeft > 0.5, detail: `notAfter ${notAfter.toISOString()} (${daysLeft.toFixed(1)} days left)` });
        items.push({ item: "subject CN matches expected domain", ok: cn === app.leaf.commonName, detail: `${cn} (expected ${app.leaf.commonName})` });
        items.push({ item: "issuer matches the expected intermediate", ok: issuer === sb.stack.vault.issuerCommonName, detail: `${issuer} (expected ${sb.stack.vault.issuerCommonName})` });
        items.push({ item: "fullchain file is 0600", ok: (fs.statSync(fullchainPath).mode & 0o777) === 0o600, detail: (fs.statSync(fullchainPath).mode & 0o777).toString(8) });
    }
    const unit = `vault-agent-${app.name}`;
    const pidFile = path.join(sb.systemctlDir(app.name), `${unit}.pid`);
    let active = false;
    if (fs.existsSync(pidFile)) {
        try {
            process.kill(Number(fs.readFileSync(pidFile, "utf8")), 0);
            active = true;
        } catch {
            active = false;
        }
    }
    items.push({ item: "Vault Agent service is active (running)", ok: active, detail: `${unit} (systemctl shim: a real vault agent process)` });
    const l = await login(sb, app, vault);
    const policies = [...l.policies].sort().join(",");
    items.push({ item: "cert-auth login works with generated agent cert", ok: l.ok, detail: l.ok ? `token policies: ${policies}` : l.detail });
    const calls = readLines(path.join(sb.podmanDir(app.name), "calls.log"));
    const proxy = app.reload.proxy?.replace(/^podman:/, "");
    const reloaded = calls.filter((c) => c.startsWith("kill ")).map((c) => c.split(" ").pop());
    const wanted = [`${app.name}-web`, ...(proxy ? [proxy] : [])];
    if (sb.serving) {
        const served = probeServed(sb, app, chainFile);
        const direct = served.serial === leafSerial;
        const edge = served.edge;
        items.push({
            item: `served certificate = new leaf (direct${edge ? " and through the edge proxy" : ""})`,
            ok: direct && (edge?.ok ?? true),
            detail: `${served.endpoint} serves ${served.serial || "nothing"} (${served.detail})${edge ? `; edge ${edge.detail}` : "; edge proxy not run (needs root)"}`,
        });
    }
    items.push({
        item: "post-hook reloads fired (labelled containers, then the edge proxy)",
        ok: wanted.every((w) => reloaded.includes(w)),
        detail: `podman reloaded: ${reloaded.join(", ") || "nothing"}`,
    });
    return items;
}

/** The report as the terminal shows it. */
export function formatReport(r: RehearsalReport): string {
    const lines: string[] = [];
    lines.push("", `Rehearsal of ${path.relative(process.cwd(), r.stackFile) || r.stackFile} against Vault ${r.vaultVersion}`, `engine: ${r.engine}`, `host steps ran as: ${r.userMode}`);
    for (const a of r.apps) {
        lines.push("", `${a.app}: post-rotation checklist`);
        for (const c of a.checklist) lines.push(`  - [${c.ok ? "x" : " "}] ${c.item}: ${c.detail}`);
        lines.push(`  agent cert serial ${a.agentSerial}`, `  leaf serial       ${a.leafSerial} (notAfter ${a.leafNotAfter})`);
        if (a.rotated) {
            const x = a.rotated;
            lines.push(
                `  rotation (${r.epochs.first} -> ${r.epochs.rotated}):`,
                `    agent serial ${a.agentSerial} -> ${x.agentSerial}`,
                `    leaf serial  ${a.leafSerial} -> ${x.leafSerial} (notAfter ${x.leafNotAfter})`,
                `    - [${x.oldAgentRevoked ? "x" : " "}] old agent cert revoked`,
                `    - [${x.oldAgentLoginRefused ? "x" : " "}] old agent cert no longer logs in`,
                `    - [${x.newAgentLoginWorks ? "x" : " "}] new agent cert logs in`,
                `    - [${x.newKeyOnlyOnHost ? "x" : " "}] new agent key generated on the host, in no resource's state`,
                `    - [${x.leafReRendered ? "x" : " "}] agent re-rendered a new leaf`,
            );
            if (x.served) {
                lines.push(`    - [${x.served.serial === x.leafSerial ? "x" : " "}] served at ${x.served.endpoint}: ${x.served.serial || "nothing"} (${x.served.detail})`);
                if (x.served.edge) lines.push(`    - [${x.served.edge.ok ? "x" : " "}] through the edge proxy ${x.served.edge.detail}`);
            }
        }
    }
    lines.push("", `same epoch again: ${r.noop.changed.length === 0 ? "nothing replaced, nothing changed" : r.noop.changed.join(", ")}; agent restarts: ${r.noop.restarts}`);
    const e = r.emergency;
    lines.push(
        `emergency, ${e.app} alone (apps[0].epoch ${e.epoch}): agent ${e.agentSerial}; leaf ${e.leafSerial}; previous leaf revoked: ${e.previousLeafRevoked ? "yes" : "NO"}; new leaf served: ${e.newLeafServed ? "yes" : "NO"}`,
        `  other apps kept their serials: ${e.othersUnchanged.join(", ") || "(none)"}${e.othersChanged.length > 0 ? `; CHANGED: ${e.othersChanged.join(", ")}` : ""}; their agent restarts: ${e.otherRestarts}`,
    );
    const b = r.between;
    lines.push(
        `between rotations (verifyEvery every-run): ${b.verified.changed.length} verification steps ran; agent restarts: ${b.verified.restarts}; container reloads: ${b.verified.reloads}`,
        ...b.textfiles.map((t) => `  - [${t.ok ? "x" : " "}] textfile ${t.app}: ${t.detail}`),
    );
    if (b.swapped) {
        const w = b.swapped;
        lines.push(
            `  - [${w.namesBothSerials && w.namesEndpoint ? "x" : " "}] ${w.app} with an older leaf (${w.oldSerial}) put back: the run failed naming the endpoint and both serials`,
            `  - [${w.recovered ? "x" : " "}] ${w.app} put right: the next run passed`,
        );
    }
    lines.push(
        `  - [${b.status.healthyExit === 0 && b.status.listsEveryApp ? "x" : " "}] npm run status: every app listed, exit ${b.status.healthyExit}`,
        ...(b.status.expiredExit !== undefined ? [`  - [${b.status.expiredExit === 1 && b.status.expiredNamesApp ? "x" : " "}] npm run status with an expired leaf served: exit ${b.status.expiredExit}, the app flagged`] : []),
    );
    for (const v of r.versions) {
        lines.push(`versions: ${v.app}: agent ${v.agent || "unknown"}, server ${v.server || "unknown"}: ${v.warning === "" && v.agent !== "" && v.server !== "" ? "no drift" : v.warning || "drift cannot be seen"}`);
    }
    for (const w of r.versionWarnings) lines.push(`warning: ${w}`);
    lines.push("", r.ok ? "RESULT: every check passed" : `RESULT: ${r.failures.length} check(s) failed:\n${r.failures.map((f) => `  - ${f}`).join("\n")}`);
    lines.push(`sandbox kept for inspection: ${r.sandbox} (npm run rehearse -- --clean removes it)`);
    return lines.join("\n");
}
