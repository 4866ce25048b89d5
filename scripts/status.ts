// `npm run status -- --stack <s> [--stack <s2> ...] | --outputs <file.json>`: is every app's rotation
// still good *now*? Read-only and token-free: the stack's outputs (what the last passed verification
// saw) against one live look per app (a TLS handshake to its listener, the served leaf, Vault's
// unauthenticated `<pki>/cert/ca_chain`, `<pki>/cert/<serial>` and `sys/health`). One table per stack,
// a row per app; exit 0 all healthy, 1 something needs attention, 2 the status could not be determined.
//
// Layout: the pure part (parseStackOutputs, assessApp, assessStack, formatTable, exitCodeOf) is
// separate from the I/O (readOutputs, liveLook) so the verdicts are unit-tested without a network;
// `main` only wires them.
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { normalizeSerial, parseCertificate, splitPemCertificates } from "../providers/pem";
import { peekServed, withRetries, type ProbeOptions } from "../providers/servedCert";
import { asRecord, asString, clientForConnection, type VaultClient } from "../providers/vaultClient";
import { parseVaultVersion, versionDrift } from "../providers/versionDrift";

const REPO_ROOT = path.resolve(__dirname, "..");

// ---------------------------------------------------------------- the outputs

/** `verificationPlan`: how often apps are re-verified, and the slack for a late run. */
export interface VerificationPlan {
    every: string;
    everySeconds: number;
    marginSeconds: number;
    window: string;
}

/** `vaultTarget`: where the live look asks (unauthenticated endpoints only). */
export interface VaultTarget {
    address: string;
    pkiMount: string;
    certAuthPath: string;
}

/** One app's outputs, as the assessment needs them: the last verification's facts, or the rotation's. */
export interface AppOutputs {
    app: string;
    /** SNI and name for the handshake ("" when the outputs lack it). */
    leafCommonName: string;
    /** `host:port`; "" when serving is not checked for the app. */
    serveEndpoint: string;
    /** Where the facts below come from: `verification`, or the rotation report (`checkedAt`) standing in. */
    basis: "verification" | "rotation";
    /** ISO 8601 of the last passed verification (or the rotation's check); "" for never. */
    verifiedAt: string;
    agentCertSerial: string;
    agentCertNotAfter: string;
    /** The serial the app should serve: the last verified leaf. */
    leafSerial: string;
    leafNotAfter: string;
    agentVersion: string;
    /** Where a fact came from or was missing, one line each (never a reason for attention by itself). */
    notes: string[];
}

export interface StackOutputs {
    apps: AppOutputs[];
    plan: VerificationPlan;
    /** Undefined when the outputs do not say (older stack): no live look is possible. */
    vaultTarget?: VaultTarget;
    notes: string[];
}

/** The outputs could not be read or are not a stack's outputs: the status is undetermined (exit 2). */
export class OutputsError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "OutputsError";
    }
}

/** Used when the outputs have no `verificationPlan` (older stack): the prod schedule, daily. */
export const ASSUMED_EVERY_SECONDS = 86_400;

/** The margin a stack's config allows for a late run (config.ts runMarginSeconds): a quarter, at least an hour. */
function defaultMarginSeconds(everySeconds: number): number {
    return Math.max(3600, Math.floor(everySeconds / 4));
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** A serial in Vault's form, or the text as given when it is not one (it then matches nothing). */
function serialOrRaw(v: unknown): string {
    const s = str(v).trim();
    if (s === "") return "";
    try {
        return normalizeSerial(s);
    } catch {
        return s;
    }
}

function parseApp(app: string, raw: unknown): AppOutputs {
    const r = asRecord(raw);
    const notes: string[] = [];
    const v = r.verification === undefined || r.verification === null ? undefined : asRecord(r.verification);
    const verifiedAt = str(v?.verifiedAt);
    const useVerification = v !== undefined && verifiedAt !== "";
    if (!v) notes.push("no verification in the outputs (older stack): the rotation's check (checkedAt) stands in for the last verification");
    else if (!useVerification) notes.push("verification has not run yet: the rotation's check (checkedAt) stands in for it");
    // A verification field the outputs lack falls back to the rotation report's.
    const pick = (key: string): unknown => (useVerification && v[key] !== undefined ? v[key] : r[key]);
    const leafCommonName = str(r.leafCommonName);
    const serveEndpoint = str(r.serveEndpoint);
    if (r.leafCommonName === undefined) notes.push("no leafCommonName in the outputs (older stack): serving not checked");
    else if (r.serveEndpoint === undefined) notes.push("no serveEndpoint in the outputs (older stack): serving not checked");
    return {
        app,
        leafCommonName,
        serveEndpoint: leafCommonName === "" ? "" : serveEndpoint,
        basis: useVerification ? "verification" : "rotation",
        verifiedAt: useVerification ? verifiedAt : str(r.checkedAt),
        agentCertSerial: serialOrRaw(pick("agentCertSerial")),
        agentCertNotAfter: str(pick("agentCertNotAfter")),
        leafSerial: serialOrRaw(pick("leafSerial")),
        leafNotAfter: str(pick("leafNotAfter")),
        agentVersion: str(pick("agentVersion")),
        notes,
    };
}

/**
 * The JSON `pulumi stack output --json` prints, read defensively: a field an
 * older stack lacks falls back and says so in `notes`. Throws OutputsError when
 * there is no `apps` object (not this program's outputs, or an empty stack).
 */
export function parseStackOutputs(raw: unknown): StackOutputs {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new OutputsError("the outputs are not a JSON object");
    const outputs = raw as Record<string, unknown>;
    const apps = outputs.apps;
    if (typeof apps !== "object" || apps === null || Array.isArray(apps)) {
        throw new OutputsError(`the outputs have no "apps" object (keys: ${Object.keys(outputs).join(", ") || "none"}): not a vault-rotation stack, or one never deployed`);
    }
    const notes: string[] = [];
    const p = asRecord(outputs.verificationPlan);
    // every-run (everySeconds 0): each run verifies, and runs are rotation.runInterval apart.
    const everySeconds = num(p.everySeconds) === 0 ? num(p.runIntervalSeconds) : num(p.everySeconds);
    let plan: VerificationPlan;
    if (everySeconds !== undefined && everySeconds > 0) {
        const margin = num(p.marginSeconds);
        if (margin === undefined) notes.push(`verificationPlan has no marginSeconds: assumed ${defaultMarginSeconds(everySeconds)}s`);
        plan = { every: str(p.every) || `${everySeconds}s`, everySeconds, marginSeconds: margin ?? defaultMarginSeconds(everySeconds), window: str(p.window) };
    } else {
        plan = { every: "24h", everySeconds: ASSUMED_EVERY_SECONDS, marginSeconds: defaultMarginSeconds(ASSUMED_EVERY_SECONDS), window: "" };
        notes.push("no verificationPlan in the outputs (older stack): assumed verification every 24h with a 6h margin");
    }
    const t = asRecord(outputs.vaultTarget);
    let vaultTarget: VaultTarget | undefined;
    if (str(t.address) !== "" && str(t.pkiMount) !== "") {
        vaultTarget = { address: str(t.address), pkiMount: str(t.pkiMount), certAuthPath: str(t.certAuthPath) };
    } else {
        notes.push("no vaultTarget (address and pkiMount) in the outputs (older stack): no live look is possible");
    }
    return {
        apps: Object.entries(apps as Record<string, unknown>)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([name, value]) => parseApp(name, value)),
        plan,
        vaultTarget,
        notes,
    };
}

/** Where a stack's outputs come from. */
export type OutputsSource = { kind: "stack"; stack: string } | { kind: "file"; file: string };

export function describeSource(source: OutputsSource): string {
    return source.kind === "stack" ? `pulumi stack output --json --stack ${source.stack}` : `outputs file ${source.file}`;
}

/**
 * The outputs JSON: `pulumi stack output --json --stack <s>` run in the
 * repository (where Pulumi.yaml is) with this process's environment (so
 * PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE, a Pulumi Cloud login work), or
 * a file holding what that command printed. Throws OutputsError.
 */
export async function readOutputs(source: OutputsSource, options: { pulumiBin?: string; cwd?: string; timeoutMs?: number } = {}): Promise<unknown> {
    let text: string;
    if (source.kind === "file") {
        try {
            text = fs.readFileSync(source.file, "utf8");
        } catch (e) {
            throw new OutputsError(`cannot read ${source.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
        }
    } else {
        const bin = options.pulumiBin ?? "pulumi";
        const args = ["stack", "output", "--json", "--stack", source.stack];
        text = await new Promise<string>((resolve, reject) => {
            execFile(bin, args, { cwd: options.cwd ?? REPO_ROOT, env: process.env, maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 120_000 }, (error, stdout, stderr) => {
                if (!error) return resolve(stdout);
                const err = error as NodeJS.ErrnoException & { killed?: boolean };
                if (err.code === "ENOENT") return reject(new OutputsError(`${bin} not found: install the Pulumi CLI, or name it with --pulumi <bin> or PULUMI_BIN`));
                const said = stderr.trim().split("\n").slice(-3).join(" / ") || err.message;
                reject(new OutputsError(`${bin} ${args.join(" ")} failed${err.killed ? " (timed out)" : ` (exit ${String(err.code)})`}: ${said}`));
            });
        });
    }
    try {
        return JSON.parse(text) as unknown;
    } catch (e) {
        throw new OutputsError(`${describeSource(source)}: not JSON (${e instanceof Error ? e.message : String(e)})`);
    }
}

// ---------------------------------------------------------------- the live look

/** What Vault says about one serial (`<pki>/cert/<serial>`, unauthenticated). */
export interface CertRecord {
    serial: string;
    /** `unknown`: Vault could not be asked (see `error`). */
    state: "valid" | "revoked" | "not found" | "unknown";
    /** ISO 8601 when revoked, else "". */
    revokedAt: string;
    /** From the stored certificate; "" when not found or unknown. */
    notBefore: string;
    notAfter: string;
    error: string;
}

export type ServedLook =
    | { kind: "not checked"; why: string }
    | { kind: "failed"; endpoint: string; error: string; tries: number }
    | { kind: "served"; endpoint: string; serial: string; subjectCN: string; notBefore: string; notAfter: string; chainProblem: string; nameProblem: string };

/** One app's live, read-only, token-free look. */
export interface LiveLook {
    /** "" when Vault's unauthenticated endpoints answered, else why they did not. */
    vaultError: string;
    /** From `sys/health` ("" when redacted or not asked). */
    serverVersion: string;
    served: ServedLook;
    /** The outputs' agent cert in Vault. */
    agentCert?: CertRecord;
    /** The outputs' (expected) leaf in Vault: its notBefore tells a newer render from an older leaf. */
    expectedLeaf?: CertRecord;
    /** The served leaf in Vault, when it is not the expected one. */
    servedLeaf?: CertRecord;
}

export interface LookOptions {
    /** PEM bundle that verifies Vault's listener; default VAULT_CACERT, else Node's roots. */
    caFile?: string;
    /** Handshake attempts and timeouts (default: 3 attempts, 5 s each). */
    probe?: ProbeOptions;
    /** Per Vault request (default 5000 ms). */
    vaultTimeoutMs?: number;
    /** Vault retries after the first attempt (default 2). */
    vaultRetries?: number;
}

function failure(e: unknown): string {
    return e instanceof Error ? e.message : String(e);
}

async function readCertRecord(client: VaultClient, pkiMount: string, serial: string): Promise<CertRecord> {
    const none = { serial, revokedAt: "", notBefore: "", notAfter: "", error: "" };
    try {
        const res = await client.request("GET", `${pkiMount}/cert/${serial}`, undefined, { noToken: true, acceptStatus: [404] });
        const data = asRecord(asRecord(res.body).data);
        const pem = asString(data.certificate) ?? "";
        if (res.status === 404 || splitPemCertificates(pem).length === 0) return { ...none, state: "not found" };
        const cert = parseCertificate(pem);
        const revokedSeconds = Number(data.revocation_time ?? 0);
        const revoked = Number.isFinite(revokedSeconds) && revokedSeconds > 0;
        return {
            ...none,
            state: revoked ? "revoked" : "valid",
            revokedAt: revoked ? asString(data.revocation_time_rfc3339) || new Date(revokedSeconds * 1000).toISOString() : "",
            notBefore: cert.notBefore.toISOString(),
            notAfter: cert.notAfter.toISOString(),
        };
    } catch (e) {
        return { ...none, state: "unknown", error: failure(e) };
    }
}

/**
 * The live look for every app of a stack: Vault's issuing chain and version
 * once, then per app (in parallel) a handshake to `serveEndpoint` verified
 * against that chain, and `<pki>/cert/<serial>` for the agent cert, the
 * expected leaf and a served leaf that differs. Never sends or reads a token.
 * Never throws: what could not be looked at is in the result.
 */
export async function liveLook(outputs: StackOutputs, options: LookOptions = {}): Promise<Record<string, LiveLook>> {
    const target = outputs.vaultTarget;
    let vaultError = "";
    let serverVersion = "";
    let chainPem = "";
    let client: VaultClient | undefined;
    if (!target) {
        vaultError = "the outputs name no vaultTarget (older stack), so Vault cannot be asked";
    } else {
        const caFile = options.caFile ?? (process.env.VAULT_CACERT?.trim() || undefined);
        try {
            client = clientForConnection(
                { address: target.address, ...(caFile ? { caCertFile: caFile } : {}) },
                { withToken: false, maxRetries: options.vaultRetries ?? 2, timeoutMs: options.vaultTimeoutMs ?? 5000 },
            );
            const res = await client.request("GET", `${target.pkiMount}/cert/ca_chain`, undefined, { noToken: true });
            const blocks = splitPemCertificates(asString(asRecord(asRecord(res.body).data).certificate) ?? "");
            if (blocks.length === 0) throw new Error(`${target.pkiMount}/cert/ca_chain: no certificate in Vault's answer`);
            chainPem = blocks.join("");
        } catch (e) {
            client = undefined;
            const message = failure(e);
            const tlsTrust = /certificate|self[- ]signed|UNABLE_TO|CERT_/i.test(message);
            vaultError = `${target.address}: ${message}${tlsTrust && !caFile ? " (no listener CA given: set VAULT_CACERT or --ca-file)" : ""}`;
        }
        if (client) {
            try {
                // Standbys, DR/performance secondaries and a sealed server still answer with their version.
                const res = await client.request("GET", "sys/health", undefined, { query: { standbyok: "true" }, noToken: true, acceptStatus: [429, 472, 473, 501, 503] });
                serverVersion = parseVaultVersion(asString(asRecord(res.body).version))?.text ?? "";
            } catch {
                // The version is a warning's input; the chain above already proved Vault reachable.
            }
        }
    }
    const unknown = (serial: string): CertRecord => ({ serial, state: "unknown", revokedAt: "", notBefore: "", notAfter: "", error: vaultError });
    const probe = { attempts: 3, firstDelayMs: 250, timeoutMs: 5000, ...options.probe };
    const looks = await Promise.all(
        outputs.apps.map(async (app): Promise<[string, LiveLook]> => {
            const record = (serial: string): Promise<CertRecord | undefined> =>
                serial === "" ? Promise.resolve(undefined) : client && target ? readCertRecord(client, target.pkiMount, serial) : Promise.resolve(unknown(serial));
            let served: ServedLook;
            if (app.serveEndpoint === "") served = { kind: "not checked", why: app.leafCommonName === "" ? "no leafCommonName in the outputs" : "serving is not checked for this app (no serveEndpoint)" };
            else if (chainPem === "") served = { kind: "not checked", why: "no issuing chain to verify against (Vault not reachable)" };
            else {
                const r = await withRetries(() => peekServed(app.serveEndpoint, app.leafCommonName, chainPem, probe.timeoutMs), probe);
                served = "error" in r ? { kind: "failed", endpoint: app.serveEndpoint, error: r.error, tries: r.tries } : { kind: "served", endpoint: app.serveEndpoint, ...r.value };
            }
            const [agentCert, expectedLeaf, servedLeaf] = await Promise.all([
                record(app.agentCertSerial),
                record(app.leafSerial),
                served.kind === "served" && served.serial !== app.leafSerial ? record(served.serial) : Promise.resolve(undefined),
            ]);
            return [app.app, { vaultError, serverVersion, served, agentCert, expectedLeaf, servedLeaf }];
        }),
    );
    return Object.fromEntries(looks);
}

// ---------------------------------------------------------------- the assessment (pure)

export type ServedVerdict = "expected" | "newer" | "older" | "other" | "invalid" | "failed" | "not checked";

export interface AppAssessment {
    app: string;
    ok: boolean;
    /** Why the app needs attention, each spelled out; empty when ok. */
    reasons: string[];
    /** Shown, never a reason for attention (version drift). */
    warnings: string[];
    /** Where facts came from, a newer render seen. */
    notes: string[];
    agentCert: { serial: string; notAfter: string; daysLeft: number | null; expired: boolean; vault: CertRecord["state"] | "not asked" };
    leaf: { expectedSerial: string; notAfter: string; daysLeft: number | null; expired: boolean; from: "served" | "outputs" };
    served: { verdict: ServedVerdict; endpoint: string; serial: string; detail: string };
    lastVerification: { at: string; ageSeconds: number | null; from: "verification" | "rotation check" | "never" };
    versions: { agent: string; server: string; drift: boolean };
}

const DAY = 86_400;

/** `45s`, `12m`, `7h`, `3.2d`. */
export function formatDuration(seconds: number): string {
    const s = Math.abs(seconds);
    const sign = seconds < 0 ? "-" : "";
    if (s < 120) return `${sign}${Math.round(s)}s`;
    if (s < 7200) return `${sign}${Math.round(s / 60)}m`;
    if (s < 3 * DAY) return `${sign}${Math.round(s / 3600)}h`;
    return `${sign}${(s / DAY).toFixed(1)}d`;
}

function daysLeft(notAfter: Date, now: Date): number {
    return Math.round(((notAfter.getTime() - now.getTime()) / 1000 / DAY) * 10) / 10;
}

function parseTime(text: string): Date | undefined {
    if (text === "") return undefined;
    const d = new Date(text);
    return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * One app's verdict from its outputs and its live look at `now`. Needs
 * attention: the agent cert or the leaf (served, else the outputs') expired or
 * expiring before the next verification is due plus its margin; the last
 * verification older than 2 × every, or never; a failed handshake, a served leaf
 * that is neither the expected nor a newer valid one, or an older one; a revoked
 * agent cert or served leaf; Vault not reachable. Version drift is a warning.
 */
export function assessApp(outputs: AppOutputs, live: LiveLook, now: Date, plan: VerificationPlan): AppAssessment {
    const reasons: string[] = [];
    const warnings: string[] = [];
    const notes = [...outputs.notes];
    const horizon = plan.everySeconds + plan.marginSeconds;
    const horizonText = `the next verification is due (every ${plan.every} + ${formatDuration(plan.marginSeconds)} margin)`;
    /** An expired or expiring certificate, as a reason. */
    const lifetime = (what: string, notAfter: Date): void => {
        const left = (notAfter.getTime() - now.getTime()) / 1000;
        if (left <= 0) reasons.push(`${what} expired at ${notAfter.toISOString()} (${formatDuration(-left)} ago)`);
        else if (left < horizon) reasons.push(`${what} expires at ${notAfter.toISOString()} (in ${formatDuration(left)}), before ${horizonText}`);
    };
    const revocation = (what: string, record: CertRecord | undefined): void => {
        if (!record) return;
        if (record.state === "revoked") reasons.push(`${what} is revoked (since ${record.revokedAt})`);
        else if (record.state === "not found") reasons.push(`${what} is not in Vault (cert/${record.serial}: not found), so its revocation cannot be seen`);
        else if (record.state === "unknown" && live.vaultError === "") reasons.push(`${what}: revocation unknown (${record.error})`);
    };

    if (live.vaultError !== "") reasons.push(`Vault not reachable for the live look: ${live.vaultError}`);

    // The agent cert: Vault's copy when it answered, else the outputs'.
    const agentSerial = outputs.agentCertSerial;
    const agentNotAfterText = live.agentCert?.notAfter || outputs.agentCertNotAfter;
    const agentNotAfter = parseTime(agentNotAfterText);
    if (agentSerial === "") reasons.push("no agent cert serial in the outputs");
    if (!agentNotAfter) reasons.push(`agent cert ${agentSerial || "(no serial)"}: notAfter unknown (${JSON.stringify(outputs.agentCertNotAfter)} in the outputs)`);
    else lifetime(`agent cert ${agentSerial}`, agentNotAfter);
    revocation(`agent cert ${agentSerial}`, live.agentCert);

    // What is served, against what the last verification saw.
    const expected = outputs.leafSerial;
    const served = live.served;
    let servedOut: AppAssessment["served"];
    let leafNotAfter: Date | undefined;
    let leafFrom: "served" | "outputs" = "outputs";
    if (served.kind === "not checked") {
        servedOut = { verdict: "not checked", endpoint: outputs.serveEndpoint, serial: "", detail: served.why };
    } else if (served.kind === "failed") {
        reasons.push(`handshake to ${served.endpoint} (SNI ${outputs.leafCommonName}) failed after ${served.tries} attempt(s): ${served.error}`);
        servedOut = { verdict: "failed", endpoint: served.endpoint, serial: "", detail: served.error };
    } else {
        leafFrom = "served";
        leafNotAfter = parseTime(served.notAfter);
        const at = `at ${served.endpoint}`;
        // An expired leaf is said once, by its lifetime below.
        const chainProblem = served.chainProblem === "CERT_HAS_EXPIRED" ? "" : served.chainProblem;
        const problems = [
            ...(chainProblem ? [`its chain does not verify against the PKI's issuing chain (${chainProblem})`] : []),
            ...(served.nameProblem ? [`it is not valid for ${outputs.leafCommonName} (${served.nameProblem})`] : []),
        ];
        const valid = served.chainProblem === "" && served.nameProblem === "";
        let verdict: ServedVerdict;
        let detail: string;
        if (expected !== "" && served.serial === expected) {
            verdict = valid ? "expected" : "invalid";
            detail = `the last verified leaf ${expected}`;
            if (problems.length > 0) reasons.push(`served leaf ${served.serial} ${at}: ${problems.join("; ")}`);
        } else {
            // Newer or older by notBefore: the expected leaf's as Vault holds it, else (not readable)
            // by notAfter against the outputs' (leaves of one app share a TTL).
            let order: number | undefined;
            let by = "notBefore";
            const expectedNotBefore = parseTime(live.expectedLeaf?.notBefore ?? "");
            const servedNotBefore = parseTime(served.notBefore);
            const expectedNotAfter = parseTime(outputs.leafNotAfter);
            if (expectedNotBefore && servedNotBefore) order = Math.sign(servedNotBefore.getTime() - expectedNotBefore.getTime());
            else if (expectedNotAfter && leafNotAfter) {
                by = "notAfter (the expected leaf's notBefore could not be read from Vault)";
                order = Math.sign(leafNotAfter.getTime() - expectedNotAfter.getTime());
            }
            const compared =
                by === "notBefore"
                    ? `notBefore ${served.notBefore} vs the expected's ${expectedNotBefore?.toISOString() ?? "?"}`
                    : `notAfter ${served.notAfter} vs the expected's ${outputs.leafNotAfter}, by ${by}`;
            if (expected === "") {
                verdict = "other";
                detail = "the outputs name no expected leaf serial";
                reasons.push(`served leaf ${served.serial} ${at}: the outputs name no expected leaf serial to compare it with`);
            } else if (order === 1 && valid) {
                verdict = "newer";
                detail = `a newer render than ${expected}, not yet verified`;
                notes.push(`served leaf ${served.serial} ${at} is a newer render than the last verified ${expected} (${compared}), valid for ${outputs.leafCommonName}: not yet verified`);
            } else if (order === 1) {
                verdict = "invalid";
                detail = `newer than ${expected} but not valid`;
                reasons.push(`served leaf ${served.serial} ${at} is neither the expected ${expected} nor a newer valid one: ${problems.join("; ") || "it has expired"}`);
            } else if (order === -1) {
                verdict = "older";
                detail = `older than ${expected}`;
                reasons.push(`served leaf ${served.serial} ${at} is older than the expected ${expected} (${compared}): the app serves a certificate from before the last verification`);
            } else {
                verdict = "other";
                detail = `not ${expected}`;
                reasons.push(`served leaf ${served.serial} ${at} is neither the expected ${expected} nor a newer one (${order === undefined ? "their dates could not be compared" : compared})${problems.length > 0 ? `; ${problems.join("; ")}` : ""}`);
            }
        }
        servedOut = { verdict, endpoint: served.endpoint, serial: served.serial, detail };
        revocation(`served leaf ${served.serial}`, served.serial === expected ? live.expectedLeaf : live.servedLeaf);
    }

    // The leaf's lifetime: the served one's when a handshake got it, else the outputs'.
    const leafSerial = servedOut.serial || expected;
    if (leafFrom === "outputs") {
        leafNotAfter = parseTime(live.expectedLeaf?.notAfter || outputs.leafNotAfter);
        if (!leafNotAfter) reasons.push(`leaf ${expected || "(no serial)"}: notAfter unknown (${JSON.stringify(outputs.leafNotAfter)} in the outputs)`);
        else lifetime(`leaf ${expected} (from the outputs, not served-checked)`, leafNotAfter);
        // Not served-checked: whether the leaf the outputs name was revoked is still worth saying.
        revocation(`leaf ${expected}`, live.expectedLeaf);
    } else if (leafNotAfter) {
        lifetime(`served leaf ${leafSerial}`, leafNotAfter);
    } else {
        reasons.push(`served leaf ${leafSerial}: notAfter unknown`);
    }

    // The last verification.
    const verifiedAt = parseTime(outputs.verifiedAt);
    let lastVerification: AppAssessment["lastVerification"];
    if (!verifiedAt) {
        lastVerification = { at: "", ageSeconds: null, from: "never" };
        reasons.push("never verified (the outputs hold no verification time)");
    } else {
        const age = (now.getTime() - verifiedAt.getTime()) / 1000;
        lastVerification = { at: verifiedAt.toISOString(), ageSeconds: Math.round(age), from: outputs.basis === "verification" ? "verification" : "rotation check" };
        if (age > 2 * plan.everySeconds) {
            reasons.push(`last verification ${verifiedAt.toISOString()} is ${formatDuration(age)} old, more than 2 x every ${plan.every} (${formatDuration(2 * plan.everySeconds)}): the scheduled verification has not passed since`);
        }
    }

    // Version drift: the live server against the agent version the outputs recorded; a warning only.
    const server = parseVaultVersion(live.serverVersion);
    const agent = parseVaultVersion(outputs.agentVersion);
    const drift = live.vaultError === "" ? versionDrift(outputs.app, server, agent) : { mismatch: false, warning: "" };
    if (drift.warning) warnings.push(drift.warning);

    return {
        app: outputs.app,
        ok: reasons.length === 0,
        reasons,
        warnings,
        notes,
        agentCert: {
            serial: agentSerial,
            notAfter: agentNotAfter?.toISOString() ?? "",
            daysLeft: agentNotAfter ? daysLeft(agentNotAfter, now) : null,
            expired: agentNotAfter !== undefined && agentNotAfter <= now,
            vault: live.agentCert?.state ?? "not asked",
        },
        leaf: {
            expectedSerial: expected,
            notAfter: leafNotAfter?.toISOString() ?? "",
            daysLeft: leafNotAfter ? daysLeft(leafNotAfter, now) : null,
            expired: leafNotAfter !== undefined && leafNotAfter <= now,
            from: leafFrom,
        },
        served: servedOut,
        lastVerification,
        versions: { agent: agent?.text ?? outputs.agentVersion, server: server?.text ?? live.serverVersion, drift: drift.mismatch },
    };
}

export interface StackAssessment {
    /** The stack's name, or the outputs file's. */
    stack: string;
    source: string;
    checkedAt: string;
    /** "" when assessed; else why the status could not be determined (exit 2). */
    error: string;
    plan?: VerificationPlan;
    vaultTarget?: VaultTarget;
    notes: string[];
    /** Stack-wide reasons for attention (no apps). */
    reasons: string[];
    apps: AppAssessment[];
}

export function assessStack(stack: string, source: string, outputs: StackOutputs, looks: Record<string, LiveLook>, now: Date): StackAssessment {
    const notLooked: LiveLook = { vaultError: "no live look was made for this app", serverVersion: "", served: { kind: "not checked", why: "no live look" } };
    return {
        stack,
        source,
        checkedAt: now.toISOString(),
        error: "",
        plan: outputs.plan,
        ...(outputs.vaultTarget ? { vaultTarget: outputs.vaultTarget } : {}),
        notes: outputs.notes,
        reasons: outputs.apps.length === 0 ? ["the outputs list no apps"] : [],
        apps: outputs.apps.map((app) => assessApp(app, looks[app.app] ?? notLooked, now, outputs.plan)),
    };
}

/** 2 when a stack's status could not be determined, else 1 when anything needs attention, else 0. */
export function exitCodeOf(stacks: StackAssessment[]): 0 | 1 | 2 {
    if (stacks.length === 0 || stacks.some((s) => s.error !== "")) return 2;
    return stacks.some((s) => s.reasons.length > 0 || s.apps.some((a) => !a.ok)) ? 1 : 0;
}

// ---------------------------------------------------------------- the table (pure)

/** `2025-06-01T03:00Z`: minutes are enough for expiry and verification times. */
function shortTime(iso: string): string {
    return iso === "" ? "?" : iso.replace(/:\d\d(\.\d+)?Z$/, "Z");
}

function shortSerial(serial: string): string {
    return serial.length > 14 ? `${serial.slice(0, 11)}...` : serial;
}

function certCell(c: { notAfter: string; daysLeft: number | null; expired: boolean }): string {
    return `${shortTime(c.notAfter)} ${c.expired ? "EXPIRED" : c.daysLeft === null ? "?" : `${c.daysLeft.toFixed(1)}d`}`;
}

const SERVED_CELL: Record<ServedVerdict, (s: AppAssessment["served"]) => string> = {
    expected: (s) => `expected ${shortSerial(s.serial)}`,
    newer: (s) => `newer ${shortSerial(s.serial)} (not yet verified)`,
    older: (s) => `OLDER ${shortSerial(s.serial)}`,
    other: (s) => `OTHER ${shortSerial(s.serial)}`,
    invalid: (s) => `INVALID ${shortSerial(s.serial)}`,
    failed: () => "FAILED",
    "not checked": () => "not checked",
};

function versionsCell(v: AppAssessment["versions"]): string {
    if (v.drift) return `DRIFT agent ${v.agent} server ${v.server}`;
    if (v.agent !== "" && v.agent === v.server) return v.agent;
    return `agent ${v.agent || "?"} server ${v.server || "?"}`;
}

function lastCell(l: AppAssessment["lastVerification"]): string {
    if (l.from === "never") return "NEVER";
    return `${shortTime(l.at)} ${formatDuration(l.ageSeconds ?? 0)} ago${l.from === "rotation check" ? " (rotation)" : ""}`;
}

/**
 * One stack as text: a header, a row per app (one line each, the verdict last:
 * `OK` or `ATTENTION: <reason>; <reason>`), then warnings and notes, each line
 * naming its app.
 */
export function formatTable(stack: StackAssessment): string {
    const lines: string[] = [];
    if (stack.error !== "") {
        lines.push(`== stack ${stack.stack} (${stack.source}): STATUS UNKNOWN: ${stack.error}`);
        return lines.join("\n");
    }
    const attention = stack.apps.filter((a) => !a.ok).length;
    lines.push(`== stack ${stack.stack} (${stack.source}) at ${shortTime(stack.checkedAt)}: ${stack.apps.length} app(s), ${attention === 0 ? "all OK" : `${attention} need${attention === 1 ? "s" : ""} attention`}`);
    const plan = stack.plan;
    const target = stack.vaultTarget ? `vault ${stack.vaultTarget.address}, pki ${stack.vaultTarget.pkiMount}` : "vault unknown";
    if (plan) lines.push(`   ${target}; verified ${plan.every === "every-run" ? `on every run (runs ${formatDuration(plan.everySeconds)} apart)` : `every ${plan.every}`}, expiry warned ${formatDuration(plan.everySeconds + plan.marginSeconds)} ahead (every + margin), stale after ${formatDuration(2 * plan.everySeconds)}${plan.window ? `; window ${plan.window}` : ""}`);
    const header = ["APP", "AGENT CERT notAfter left", "LEAF notAfter left", "SERVED", "LAST VERIFIED", "VERSIONS", "VERDICT"];
    const rows = stack.apps.map((a) => [
        a.app,
        certCell(a.agentCert),
        `${certCell(a.leaf)}${a.leaf.from === "outputs" ? " (outputs)" : ""}`,
        SERVED_CELL[a.served.verdict](a.served),
        lastCell(a.lastVerification),
        versionsCell(a.versions),
        a.ok ? "OK" : `ATTENTION: ${a.reasons.join("; ")}`,
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
    lines.push(line(header), ...rows.map(line));
    for (const r of stack.reasons) lines.push(`ATTENTION: ${stack.stack}: ${r}`);
    for (const a of stack.apps) for (const w of a.warnings) lines.push(`warning: ${w.startsWith(`${a.app}:`) ? w : `${a.app}: ${w}`}`);
    for (const n of stack.notes) lines.push(`note: ${stack.stack}: ${n}`);
    for (const a of stack.apps) for (const n of a.notes) lines.push(`note: ${a.app}: ${n}`);
    return lines.join("\n");
}

// ---------------------------------------------------------------- the command

export const USAGE = `usage: npm run status -- --stack <stack> [--stack <stack> ...] [options]
       npm run status -- --outputs <file.json> [--outputs <file.json> ...] [options]

Is every app's rotation still good now? For each stack, reads its outputs
(pulumi stack output --json, run in the repository; or a file holding that
JSON) and makes one live, read-only look per app that needs NO Vault token (none
is read or sent): a TLS handshake to the app's serveEndpoint (SNI
leafCommonName) verified against the PKI's issuing chain from Vault's
unauthenticated <pki>/cert/ca_chain, <pki>/cert/<serial> for the agent cert and
the served leaf (revoked?), and sys/health for the server version. Prints one
table per stack, one line per app, the verdict last (OK, or ATTENTION: reasons).

options:
  --stack <s>        a stack to read with the Pulumi CLI (repeatable: one table each)
  --outputs <file>   outputs JSON exported with pulumi stack output --json (repeatable)
  --json             print the assessment as JSON instead of the table (same exit codes)
  --ca-file <pem>    CA bundle that verifies Vault's listener (default: VAULT_CACERT)
  --pulumi <bin>     the Pulumi CLI (default: PULUMI_BIN, else pulumi on PATH)
  --timeout <s>      seconds per handshake and per Vault request (default 5)
  -h, --help         this text

exit codes:
  0  every app is healthy
  1  something needs attention: an agent cert or leaf (served, else the outputs')
     expired or expiring within every + margin of verificationPlan; the last
     verification older than 2 x every, or never; a failed handshake, a served
     leaf that is neither the expected (last verified) one nor a newer valid
     render, or an older one; a revoked agent cert or served leaf; Vault not
     reachable for the live look
  2  the status could not be determined: bad arguments, outputs unreadable
Version drift (agent vs server) is shown as a warning and does not by itself
make the exit code non-zero. A newer served leaf (later notBefore, valid chain
and name) is "newer, not yet verified", not a failure.
`;

class UsageError extends Error {}

export interface StatusOptions {
    sources: OutputsSource[];
    json: boolean;
    help: boolean;
    caFile?: string;
    pulumiBin?: string;
    timeoutMs: number;
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): StatusOptions {
    const opts: StatusOptions = { sources: [], json: false, help: false, timeoutMs: 5000 };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = (): string => {
            const v = argv[++i];
            if (v === undefined || v.startsWith("--")) throw new UsageError(`${arg} needs a value`);
            return v;
        };
        if (arg === "--stack") opts.sources.push({ kind: "stack", stack: value() });
        else if (arg === "--outputs") opts.sources.push({ kind: "file", file: value() });
        else if (arg === "--json") opts.json = true;
        else if (arg === "--ca-file") opts.caFile = value();
        else if (arg === "--pulumi") opts.pulumiBin = value();
        else if (arg === "--timeout") {
            const seconds = Number(value());
            if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--timeout takes a positive number of seconds (got ${argv[i]})`);
            opts.timeoutMs = Math.round(seconds * 1000);
        } else if (arg === "--help" || arg === "-h") opts.help = true;
        else throw new UsageError(`unknown argument ${arg}`);
    }
    if (opts.help) return opts;
    if (opts.sources.length === 0) throw new UsageError("name at least one --stack or --outputs");
    if (opts.caFile !== undefined && !fs.existsSync(opts.caFile)) throw new UsageError(`--ca-file ${opts.caFile}: no such file`);
    opts.pulumiBin ??= env.PULUMI_BIN?.trim() || undefined;
    return opts;
}

/** One stack, end to end: outputs, live look, assessment. Never throws. */
export async function statusOfSource(source: OutputsSource, opts: Pick<StatusOptions, "caFile" | "pulumiBin" | "timeoutMs">): Promise<StackAssessment> {
    const stack = source.kind === "stack" ? source.stack : path.basename(source.file);
    let outputs: StackOutputs;
    try {
        outputs = parseStackOutputs(await readOutputs(source, { pulumiBin: opts.pulumiBin }));
    } catch (e) {
        return { stack, source: describeSource(source), checkedAt: new Date().toISOString(), error: failure(e), notes: [], reasons: [], apps: [] };
    }
    const looks = await liveLook(outputs, { caFile: opts.caFile, probe: { timeoutMs: opts.timeoutMs }, vaultTimeoutMs: opts.timeoutMs });
    return assessStack(stack, describeSource(source), outputs, looks, new Date());
}

async function main(): Promise<number> {
    let opts: StatusOptions;
    try {
        opts = parseArgs(process.argv.slice(2));
    } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        process.stderr.write(`status: ${e.message}\n${USAGE}`);
        return 2;
    }
    if (opts.help) {
        process.stdout.write(USAGE);
        return 0;
    }
    const stacks: StackAssessment[] = [];
    for (const source of opts.sources) stacks.push(await statusOfSource(source, opts));
    const code = exitCodeOf(stacks);
    if (opts.json) process.stdout.write(`${JSON.stringify({ exitCode: code, stacks }, null, 2)}\n`);
    else process.stdout.write(`${stacks.map(formatTable).join("\n\n")}\n`);
    return code;
}

if (require.main === module) {
    main().then(
        (code) => {
            process.exitCode = code;
        },
        (e: unknown) => {
            process.stderr.write(`status: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
            process.exitCode = 2;
        },
    );
}
