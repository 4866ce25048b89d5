// RotationCheck: the post-rotation checklist of the runbook, run after the
// agent has rendered the new leaf. Every failed item becomes one line
// "<app>: <item>: expected <x>, found <y>"; all of them are reported together in
// a single error that fails the update and says what to do next.
//
// It also compares the agent's Vault version with the server's. That used to be
// a resource of its own (VersionDrift), always replaced together with this one
// after the host steps; merged, a rotation costs one dynamic resource less. A
// version difference stays a warning in the outputs, never a failure.
//
// Cert login is verified from the host's report (the `### login` line of the
// read-state output): the host logs in as the app user with the agent files it
// was just given, so the check needs no copy of the agent key.
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import { X509Certificate } from "crypto";
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import { vaultNames } from "../lib/naming";
import { sha256Hex } from "../lib/digest";
import { parseHostState } from "../lib/hostState";
import type { VaultConnection } from "./connection";
import type { ParsedCertificate } from "./pem";
import { chainsTo, normalizeSerial, parseCertificate, splitPemCertificates } from "./pem";
import {
    asRecord,
    asString,
    changedKeys,
    clientForConnection,
    connectionProblems,
    isUnknownInput,
    mountPathProblem,
    VaultHttpError,
} from "./vaultClient";
import { parseVaultVersion, readServerVersion, versionDrift } from "./versionDrift";
import { fetchIssuingChain } from "./issuingChain";
import { checkServed, ProbeOptions, ServeResult } from "./servedCert";
import { revokeSerial, revokeTokensOfCert, syncCrlToCertAuth } from "./certRevocation";

export interface RotationCheckInputs {
    connection: VaultConnection;
    app: string;
    /** Path of the cert auth method, e.g. `cert`. */
    certAuthPath: string;
    /** The cert auth mapping (role) the host logs in with, e.g. `agent-app-a`. */
    mappingName: string;
    /** The new agent certificate (public). */
    agentCertPem: string;
    /** Policies the login token must carry, exactly (including `default`). */
    expectedPolicies: string[];
    /** Output of the read-host-state script (public certificate blocks, login result, service state, agent version). */
    hostState: string;
    leafCommonName: string;
    /** Every DNS SAN of the leaf must be one of these. */
    allowedDomains: string[];
    /** CN of the intermediate that must have issued the leaf. */
    issuerCommonName: string;
    /** PKI mount whose issuing CA must have signed the leaf. */
    pkiMount: string;
    /** Minimum remaining validity of the leaf, in seconds. */
    minRemainingSeconds: number;
    /** Where the app serves the leaf (and, optionally, how a client reaches it through the edge proxy); absent: not checked. */
    serve?: ServeTarget;
    /**
     * After every item passed, revoke the leaf this rotation replaced (an
     * incident: it may have leaked). Off by default: the operator guide's hand
     * rollback serves the previous leaf again.
     */
    revokePreviousLeaf?: boolean;
    /**
     * Serial (hex) of the agent cert the files step replaced on the host, as the
     * host reported it: on the first run against a runbook-built host, the cert
     * `pki/issue` made by hand. Once every item passed it is revoked, when Vault
     * issued it as a client cert for this agent's CN and it carries no OU mark of
     * this program (see revokeReplacedAgentCert).
     */
    replacedAgentCertSerial?: string;
}

export interface ServeTarget {
    /** `host:port` of the app's TLS listener (SNI = the leaf CN). */
    endpoint: string;
    /** Path the check through the edge asks for (default `/`). */
    path?: string;
    edge?: { listen: string; serverName: string; host: string };
}

/** Agent vs server version: a warning, never a failure. */
export interface VersionReport {
    /** "" when the server does not say (redacted) or could not be asked. */
    serverVersion: string;
    /** "" when the host did not say. */
    agentVersion: string;
    versionMismatch: boolean;
    /** The agent is at least one minor version newer than the server. */
    agentAhead: boolean;
    /** "" when the versions are equal or the agent's is unknown. */
    versionWarning: string;
}

export interface RotationCheckResult {
    agentSerial: string;
    leafSerial: string;
    /** ISO 8601 */
    leafNotAfter: string;
    /** Days of validity left when checked, one decimal. */
    leafDaysLeft: number;
    /** Serial of the fullchain moved aside before the rotation, or "". */
    previousLeafSerial: string;
    tokenPolicies: string[];
    /** The serial a TLS handshake to the app's endpoint got ("" when serving is not checked). */
    servedSerial: string;
    /** How serving was checked, or `not checked (no serve.endpoint)`. */
    servedVia: string;
    /** ISO 8601 */
    checkedAt: string;
    /** `revokePreviousLeaf`: the serial revoked ("" when none was). */
    revokedPreviousLeaf?: string;
    /** The hand-issued agent cert the host held before, revoked ("" when there was none to revoke). */
    revokedReplacedAgentCert?: string;
    /** Why a replaced agent cert the host reported was not revoked ("" when it was, or there was none): a warning. */
    replacedAgentCertNote?: string;
}

export type RotationCheckOutputs = StoredHostState<RotationCheckInputs> & RotationCheckResult & VersionReport;

/**
 * A check's outputs without the host's report, which its inputs already hold:
 * the engine stores both, and a report (the fullchain and agent certificates
 * the host read) repeated in every checkpoint was a few KB per app (issue 21).
 * The outputs keep its SHA-256, which is what the diff compares.
 */
export type StoredHostState<I extends { hostState: string }> = Omit<I, "hostState"> & { hostState?: string; hostStateSha256: string };

export function storedHostState<I extends { hostState: string }>(inputs: I): StoredHostState<I> {
    const { hostState, ...rest } = inputs;
    return { ...rest, hostStateSha256: sha256Hex(hostState) };
}

/** changedKeys, with `hostState` compared by digest against outputs that keep only that (or, from older state, the text). */
export function changedCheckInputs<I extends { hostState: string }>(olds: Partial<StoredHostState<I>>, news: Partial<I>, keys: readonly (keyof I & string)[]): (keyof I & string)[] {
    const others = keys.filter((k) => k !== "hostState");
    const changed = changedKeys(olds as Partial<I>, news, others);
    const oldDigest = olds.hostStateSha256 ?? (typeof olds.hostState === "string" ? sha256Hex(olds.hostState) : undefined);
    const newDigest = typeof news.hostState === "string" ? sha256Hex(news.hostState) : undefined;
    const hostChanged = newDigest === undefined || oldDigest !== newDigest;
    return keys.filter((k) => (k === "hostState" ? hostChanged : changed.includes(k)));
}

const INPUT_KEYS: readonly (keyof RotationCheckInputs)[] = [
    "connection",
    "app",
    "certAuthPath",
    "mappingName",
    "agentCertPem",
    "expectedPolicies",
    "hostState",
    "leafCommonName",
    "allowedDomains",
    "issuerCommonName",
    "pkiMount",
    "minRemainingSeconds",
    "serve",
    "revokePreviousLeaf",
    "replacedAgentCertSerial",
];

/** One checklist failure, in the fixed format. */
export function failureLine(app: string, item: string, expected: string, found: string): string {
    return `${app}: ${item}: expected ${expected}, found ${found}`;
}

const listText = (items: readonly string[]) => `[${items.join(", ")}]`;
const sortedUnique = (items: readonly string[]) => [...new Set(items)].sort();

/** The login token's policies must be exactly the expected set. */
export function checkPolicies(app: string, expected: readonly string[], actual: readonly string[]): string[] {
    const want = sortedUnique(expected);
    const got = sortedUnique(actual);
    if (want.length === got.length && want.every((p, i) => p === got[i])) return [];
    const extra = got.filter((p) => !want.includes(p));
    const missing = want.filter((p) => !got.includes(p));
    const detail = [extra.length > 0 ? `extra ${listText(extra)}` : "", missing.length > 0 ? `missing ${listText(missing)}` : ""].filter(Boolean).join(", ");
    return [failureLine(app, "token policies", listText(want), `${listText(got)} (${detail})`)];
}

export interface FullchainExpectations {
    leafCommonName: string;
    allowedDomains: readonly string[];
    issuerCommonName: string;
    pkiMount: string;
    minRemainingSeconds: number;
    /** The PKI mount's issuing CA as fetched from Vault; undefined when it could not be fetched. */
    issuingCaPem?: string;
    /** Why the issuing CA could not be fetched. */
    issuingCaProblem?: string;
}

/** Checks the rendered fullchain: presence, leaf names, issuer, signature and validity. */
export function checkFullchain(
    app: string,
    fullchainText: string,
    want: FullchainExpectations,
    now: Date,
): { lines: string[]; leaf?: ParsedCertificate } {
    const certs = splitPemCertificates(fullchainText);
    if (certs.length === 0) {
        const found = fullchainText.trim() === "" ? "no fullchain file or an empty one" : "no CERTIFICATE block in it";
        return { lines: [failureLine(app, "fullchain present", "a fullchain whose first CERTIFICATE block is the leaf", found)] };
    }
    let leaf: ParsedCertificate;
    try {
        leaf = parseCertificate(certs[0]);
    } catch (e) {
        return { lines: [failureLine(app, "fullchain present", "a parseable leaf certificate", `one that does not parse (${(e as Error).message})`)] };
    }
    const lines: string[] = [];
    if (leaf.subjectCN !== want.leafCommonName) {
        lines.push(failureLine(app, "leaf CN", want.leafCommonName, leaf.subjectCN || "no CN"));
    }
    const outside = leaf.sans.filter((name) => !want.allowedDomains.includes(name));
    if (outside.length > 0) {
        lines.push(failureLine(app, "leaf SANs", `DNS names within ${listText(want.allowedDomains)}`, `${listText(outside)} outside them`));
    }
    if (leaf.issuerCN !== want.issuerCommonName) {
        lines.push(failureLine(app, "issuer CN", want.issuerCommonName, leaf.issuerCN || "no CN"));
    }
    if (want.issuingCaPem === undefined) {
        lines.push(failureLine(app, "chain", `the issuing CA of ${want.pkiMount} from Vault`, want.issuingCaProblem ?? "none"));
    } else if (!chainsTo(certs[0], want.issuingCaPem)) {
        let caName = "";
        try {
            caName = ` (CN=${parseCertificate(want.issuingCaPem).subjectCN})`;
        } catch {
            caName = " (unparseable)";
        }
        lines.push(
            failureLine(app, "chain", `a leaf signed by the issuing CA of ${want.pkiMount}${caName}`, `a leaf it did not sign (its issuer CN is ${JSON.stringify(leaf.issuerCN)})`),
        );
    }
    const nowMs = now.getTime();
    if (nowMs < leaf.notBefore.getTime() || nowMs >= leaf.notAfter.getTime()) {
        lines.push(
            failureLine(
                app,
                "validity",
                `notBefore <= ${now.toISOString()} < notAfter`,
                `notBefore ${leaf.notBefore.toISOString()}, notAfter ${leaf.notAfter.toISOString()}`,
            ),
        );
    } else {
        // Only meaningful for a leaf that is valid now; an expired one is reported above.
        const remaining = Math.floor((leaf.notAfter.getTime() - nowMs) / 1000);
        if (remaining < want.minRemainingSeconds) {
            lines.push(failureLine(app, "remaining validity", `at least ${want.minRemainingSeconds}s`, `${remaining}s (notAfter ${leaf.notAfter.toISOString()})`));
        }
    }
    return { lines, leaf };
}

/** After a rotation the leaf must be a new certificate. Nothing to compare on the first rotation. */
export function checkSerialChanged(app: string, leafSerial: string, previousText: string): { lines: string[]; previousSerial: string } {
    const previous = splitPemCertificates(previousText)[0];
    if (!previous) return { lines: [], previousSerial: "" };
    let previousSerial: string;
    try {
        previousSerial = parseCertificate(previous).serial;
    } catch (e) {
        return { lines: [failureLine(app, "serial changed", "a parseable previous leaf", `one that does not parse (${(e as Error).message})`)], previousSerial: "" };
    }
    if (previousSerial === leafSerial) {
        return { lines: [failureLine(app, "serial changed", `a serial other than the previous leaf's ${previousSerial}`, `the same serial ${leafSerial}`)], previousSerial };
    }
    return { lines: [], previousSerial };
}

/** The post-hook must have reported a successful reload after this render (issue -> write -> reload). */
export function checkReload(app: string, report: string): string[] {
    const line = report.trim();
    if (/^result=ok( |$)/.test(line)) return [];
    return [failureLine(app, "post-hook reload", "result=ok after the new render", line === "" ? "no report from the hook since the render" : JSON.stringify(line))];
}

/** `systemctl --user is-active` must say exactly `active`. */
export function checkAgentService(app: string, serviceState: string): string[] {
    const state = serviceState.trim();
    return state === "active" ? [] : [failureLine(app, "agent service", "active", state === "" ? "no answer from systemctl" : JSON.stringify(state))];
}

/** The single error text: every failed item, then what to do. */
export function rotationFailureMessage(app: string, lines: readonly string[]): string {
    const service = vaultNames(app).service;
    return [
        `vault-rotation: the post-rotation check failed for ${app} (${lines.length} item${lines.length === 1 ? "" : "s"}):`,
        ...lines.map((l) => `  ${l}`),
        `What to do: fix the cause above, then re-run \`pulumi up\` (the check runs again). For the agent side, look at its log on the host as the app user: journalctl --user -u ${service}`,
    ].join("\n");
}

/** How a failed call reads in a checklist line: Vault's status and errors, or the network problem. */
function describeFailure(e: unknown): string {
    if (e instanceof VaultHttpError) return `Vault answered ${e.status}${e.errors.length > 0 ? `: ${e.errors.join("; ")}` : ""}`;
    return (e as Error).message;
}

/** A Vault policy name as the host reports it. */
const POLICY_NAME = /^[A-Za-z0-9_.@-]+$/;

/**
 * The host's cert login report (`### login`): `policies=<sorted, comma-separated>`
 * when `vault login -method=cert` as the app user, with the files just written,
 * gave a token (looked up, then revoked), or `error=<one line>` when it did not.
 * The token must carry exactly the expected policies.
 */
export function checkLogin(
    app: string,
    login: { certAuthPath: string; mappingName: string; expectedPolicies: readonly string[] },
    reported: string,
): { lines: string[]; tokenPolicies: string[] } {
    const line = reported.trim();
    const expected = `a token from auth/${login.certAuthPath}/login with name ${login.mappingName} on the host (as the app user, with the new agent files)`;
    const policies = /^policies=(.*)$/.exec(line);
    if (policies) {
        const listed = policies[1].split(",").map((p) => p.trim()).filter((p) => p !== "");
        if (listed.length === 0 || !listed.every((p) => POLICY_NAME.test(p))) {
            return { lines: [failureLine(app, "cert login", "policies=<comma-separated policy names>", JSON.stringify(line))], tokenPolicies: [] };
        }
        const tokenPolicies = sortedUnique(listed);
        return { lines: checkPolicies(app, login.expectedPolicies, tokenPolicies), tokenPolicies };
    }
    const error = /^error=(.*)$/.exec(line);
    if (error) return { lines: [failureLine(app, "cert login", expected, error[1].trim() || "an error without a message")], tokenPolicies: [] };
    const found = line === "" ? "no login report from the host (no `### login` line in the read-state output)" : `the report ${JSON.stringify(line)}`;
    return { lines: [failureLine(app, "cert login", expected, found)], tokenPolicies: [] };
}

/** The PKI mount's issuing CA (unauthenticated endpoints), or why it could not be fetched. */
export async function fetchIssuingCa(connection: VaultConnection, pkiMount: string): Promise<{ pem: string } | { problem: string }> {
    const client = clientForConnection(connection, { withToken: false });
    const problems: string[] = [];
    try {
        const res = await client.request("GET", `${pkiMount}/cert/ca`, undefined, { noToken: true });
        const pem = asString(asRecord(asRecord(res.body).data).certificate) ?? "";
        if (splitPemCertificates(pem).length > 0) return { pem };
        problems.push(`${pkiMount}/cert/ca: no certificate in the answer`);
    } catch (e) {
        problems.push(`${pkiMount}/cert/ca: ${describeFailure(e)}`);
    }
    // Older mounts and some proxies only serve the raw PEM.
    try {
        const res = await client.request("GET", `${pkiMount}/ca/pem`, undefined, { noToken: true });
        const pem = typeof res.body === "string" ? res.body : "";
        if (splitPemCertificates(pem).length > 0) return { pem };
        problems.push(`${pkiMount}/ca/pem: no certificate in the answer`);
    } catch (e) {
        problems.push(`${pkiMount}/ca/pem: ${describeFailure(e)}`);
    }
    return { problem: problems.join("; ") };
}

/**
 * The agent's version (from the host) against the server's (`sys/health`, no
 * token). Never throws: a server that cannot be asked is a warning too, since
 * this item is advice; the checklist's own Vault call fails loudly if Vault is down.
 */
export async function measureVersions(connection: VaultConnection, app: string, agentVersionText: string): Promise<VersionReport> {
    const agent = parseVaultVersion(agentVersionText);
    let server;
    try {
        server = await readServerVersion(connection);
    } catch (e) {
        return {
            serverVersion: "",
            agentVersion: agent?.text ?? "",
            versionMismatch: false,
            agentAhead: false,
            versionWarning: agent ? `${app}: the Vault server version could not be read (${describeFailure(e)}); Vault Agent is ${agent.text}` : "",
        };
    }
    const drift = versionDrift(app, server, agent);
    return { serverVersion: server?.text ?? "", agentVersion: agent?.text ?? "", versionMismatch: drift.mismatch, agentAhead: drift.agentAhead, versionWarning: drift.warning };
}

/** The served-certificate items, verified against the PKI's issuing chain as Vault has it now. */
async function checkServedLeaf(inputs: RotationCheckInputs, leafSerial: string, probe?: ProbeOptions): Promise<ServeResult> {
    const serve = inputs.serve!;
    let caPem: string;
    try {
        caPem = await fetchIssuingChain(inputs.connection, inputs.pkiMount);
    } catch (e) {
        return { servedSerial: "", servedVia: "", problems: [failureLine(inputs.app, "served certificate", "the PKI's issuing chain to verify against", describeFailure(e))] };
    }
    return checkServed({ app: inputs.app, endpoint: serve.endpoint, commonName: inputs.leafCommonName, expectedSerial: leafSerial, caPem, path: serve.path, edge: serve.edge }, probe);
}

/** What both checklists (a rotation's and a verification's) take from the host's report and Vault. */
export interface HostFactsInputs {
    connection: VaultConnection;
    app: string;
    certAuthPath: string;
    mappingName: string;
    expectedPolicies: string[];
    hostState: string;
    leafCommonName: string;
    allowedDomains: string[];
    issuerCommonName: string;
    pkiMount: string;
    minRemainingSeconds: number;
}

/**
 * The items both checklists share: the host's cert login and its policies, the
 * agent/server versions, and the fullchain against the PKI's issuing CA. Returns
 * the failure lines so far, the parsed report and the leaf, and the verdict's time.
 */
export async function checkHostFacts(inputs: HostFactsInputs, nowOverride?: Date) {
    const { app } = inputs;
    const lines: string[] = [];
    const host = parseHostState(inputs.hostState);

    const login = checkLogin(app, inputs, host.login);
    lines.push(...login.lines);

    const versions = await measureVersions(inputs.connection, app, host.agentVersion);
    const ca = await fetchIssuingCa(inputs.connection, inputs.pkiMount);
    // The verdict's time: after the network calls, which may have taken a while.
    const now = nowOverride ?? new Date();
    const fullchain = checkFullchain(
        app,
        host.fullchain,
        {
            leafCommonName: inputs.leafCommonName,
            allowedDomains: inputs.allowedDomains,
            issuerCommonName: inputs.issuerCommonName,
            pkiMount: inputs.pkiMount,
            minRemainingSeconds: inputs.minRemainingSeconds,
            issuingCaPem: "pem" in ca ? ca.pem : undefined,
            issuingCaProblem: "problem" in ca ? ca.problem : undefined,
        },
        now,
    );
    lines.push(...fullchain.lines);
    return { lines, host, tokenPolicies: login.tokenPolicies, versions, now, fullchain };
}

/** Runs the whole checklist; throws one Error listing every failure (and the version warning, as a note). */
export async function runRotationCheck(inputs: RotationCheckInputs, options: { now?: Date; probe?: ProbeOptions } = {}): Promise<RotationCheckResult & VersionReport> {
    const { app } = inputs;
    const { lines, host, tokenPolicies, versions, now, fullchain } = await checkHostFacts(inputs, options.now);
    let previousLeafSerial = "";
    if (fullchain.leaf) {
        const serial = checkSerialChanged(app, fullchain.leaf.serial, host.previous);
        lines.push(...serial.lines);
        previousLeafSerial = serial.previousSerial;
    }
    lines.push(...checkReload(app, host.reload));
    lines.push(...checkAgentService(app, host.service));
    // What clients are served, once the files are right: a handshake to the new leaf.
    let served = { servedSerial: "", servedVia: "not checked (no serve.endpoint)" };
    if (inputs.serve && fullchain.leaf && lines.length === 0) {
        const result = await checkServedLeaf(inputs, fullchain.leaf.serial, options.probe);
        lines.push(...result.problems);
        served = { servedSerial: result.servedSerial, servedVia: result.servedVia };
    }

    if (lines.length > 0) {
        const note = versions.versionWarning ? [`Also (a warning, not a failure): ${versions.versionWarning}`] : [];
        throw new Error([rotationFailureMessage(app, lines), ...note].join("\n"));
    }
    const leaf = fullchain.leaf!;
    // Only once the new leaf is rendered, installed, reloaded and served: the old one is then out of service.
    let revokedPreviousLeaf: string | undefined;
    if (inputs.revokePreviousLeaf) {
        revokedPreviousLeaf = "";
        if (previousLeafSerial !== "" && previousLeafSerial !== leaf.serial) {
            const client = clientForConnection(inputs.connection);
            // The previous leaf comes from a file the app user owns: revoke only a serial whose
            // certificate in Vault is byte for byte that one and names this app, never a serial
            // the host chose (another app's leaf, the edge's).
            const stored = asString(asRecord(asRecord(await client.read(`${inputs.pkiMount}/cert/${previousLeafSerial}`)).data).certificate);
            const onHost = splitPemCertificates(host.previous)[0];
            const same = stored !== undefined && onHost !== undefined && new X509Certificate(stored).fingerprint256 === new X509Certificate(onHost).fingerprint256;
            if (!same || parseCertificate(stored).subjectCN !== inputs.leafCommonName) {
                throw new Error(
                    rotationFailureMessage(app, [
                        failureLine(app, "revoke previous leaf", `the previous leaf ${previousLeafSerial} to be ${inputs.leafCommonName}'s certificate as ${inputs.pkiMount} issued it`, same ? `a certificate for ${parseCertificate(stored!).subjectCN}` : "a certificate Vault does not hold under that serial; not revoked: the host's .prev file was not written by this program"),
                    ]),
                );
            }
            try {
                await revokeSerial(client, inputs.pkiMount, previousLeafSerial);
            } catch (e) {
                throw new Error(`${app}: revoking the previous leaf ${previousLeafSerial}: ${describeFailure(e)}; the new leaf is in service: revoke it by hand (vault write ${inputs.pkiMount}/revoke serial_number=${previousLeafSerial})`);
            }
            revokedPreviousLeaf = previousLeafSerial;
        }
    }
    const replaced = await revokeReplacedAgentCert(inputs);
    return {
        ...(revokedPreviousLeaf !== undefined ? { revokedPreviousLeaf } : {}),
        ...replaced,
        ...versions,
        agentSerial: parseCertificate(inputs.agentCertPem).serial,
        leafSerial: leaf.serial,
        leafNotAfter: leaf.notAfter.toISOString(),
        leafDaysLeft: Math.round(((leaf.notAfter.getTime() - now.getTime()) / 86_400_000) * 10) / 10,
        previousLeafSerial,
        tokenPolicies,
        ...served,
        checkedAt: now.toISOString(),
    };
}

/** The extended key usage OID of TLS client authentication (an agent's login). */
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/** The OU values of a certificate's subject. */
function subjectOus(pem: string): string[] {
    return new X509Certificate(pem).subject.split("\n").flatMap((part) => (part.startsWith("OU=") ? [part.slice(3)] : []));
}

/**
 * Revokes the agent cert the host held before this run's files step, when it is
 * a hand-issued one (the runbook's `pki/issue`): Vault must hold it under that
 * serial, for this agent's CN, as a client certificate, without any OU mark of
 * this program (this stack's agent certs are CertRevocation's; another stack's
 * on the same mount may share the CN). The serial comes from a file the app user
 * owns, so nothing else is ever revoked: not another app's or another stack's
 * cert, not a leaf, not a cert Vault did not issue (that is a warning: it came
 * from elsewhere). Revoked like a replaced agent cert: the CRL is copied to the
 * cert auth method, and the tokens it obtained are revoked.
 */
export async function revokeReplacedAgentCert(inputs: RotationCheckInputs): Promise<{ revokedReplacedAgentCert: string; replacedAgentCertNote: string }> {
    const none = { revokedReplacedAgentCert: "", replacedAgentCertNote: "" };
    if (!inputs.replacedAgentCertSerial) return none;
    const app = inputs.app;
    let serial: string;
    try {
        serial = normalizeSerial(inputs.replacedAgentCertSerial);
    } catch {
        return { ...none, replacedAgentCertNote: `${app}: the host reported ${JSON.stringify(inputs.replacedAgentCertSerial)} as the agent cert it held before; not a serial, nothing revoked` };
    }
    const current = parseCertificate(inputs.agentCertPem);
    if (serial === current.serial) return none;
    const client = clientForConnection(inputs.connection);
    const data = asRecord(asRecord(await client.read(`${inputs.pkiMount}/cert/${serial}`)).data);
    const stored = asString(data.certificate);
    if (!stored) {
        return {
            ...none,
            replacedAgentCertNote: `${app}: the agent cert the host held before (serial ${serial}) was not issued by ${inputs.pkiMount}; not revoked: if another CA issued it, make sure no mapping of auth/${inputs.certAuthPath} trusts that CA`,
        };
    }
    const storedCert = parseCertificate(stored);
    const cn = storedCert.subjectCN;
    if (cn !== current.subjectCN) {
        return { ...none, replacedAgentCertNote: `${app}: the agent cert the host held before (serial ${serial}) names ${cn}, not ${current.subjectCN}; not revoked` };
    }
    // Any program-issued agent cert carries a `vault-rotation ...` OU mark: this stack's
    // (CertRevocation revokes it) or another stack's on the same mount, whose apps may share
    // this CN; a leaf for the name is a server cert. Neither is this host's hand-issued login cert.
    if (subjectOus(stored).some((ou) => ou.startsWith("vault-rotation "))) return none;
    if (!storedCert.extKeyUsage.includes(CLIENT_AUTH)) {
        return { ...none, replacedAgentCertNote: `${app}: the cert the host held before (serial ${serial}) is not a client certificate; not revoked` };
    }
    if (Number(data.revocation_time ?? 0) > 0) return { ...none, revokedReplacedAgentCert: serial };
    try {
        await revokeSerial(client, inputs.pkiMount, serial);
    } catch (e) {
        throw new Error(`${app}: revoking the agent cert the host held before (${serial}): ${describeFailure(e)}; the new one is in service: revoke it by hand (vault write ${inputs.pkiMount}/revoke serial_number=${serial})`);
    }
    await syncCrlToCertAuth(client, inputs.pkiMount, inputs.certAuthPath);
    await revokeTokensOfCert(client, serial, inputs.certAuthPath);
    return { revokedReplacedAgentCert: serial, replacedAgentCertNote: "" };
}

function stringListProblem(value: unknown, nonEmpty: boolean): string | undefined {
    if (isUnknownInput(value)) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string" || isUnknownInput(v))) return "must be a list of strings";
    if (nonEmpty && value.length === 0) return "must not be empty";
    return undefined;
}

export const rotationCheckProvider: pulumi.dynamic.ResourceProvider<RotationCheckInputs, RotationCheckOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        const known = (v: unknown) => v !== undefined && !isUnknownInput(v);
        const fail = (property: string, reason: string) => failures.push({ property, reason });

        if (!isUnknownInput(news.app) && (typeof news.app !== "string" || !/^[a-z][a-z0-9-]*$/.test(news.app))) {
            fail("app", `must match [a-z][a-z0-9-]* (got ${JSON.stringify(news.app)})`);
        }
        for (const key of ["certAuthPath", "pkiMount"] as const) {
            const problem = isUnknownInput(news[key]) ? undefined : mountPathProblem(news[key]);
            if (problem) fail(key, problem);
        }
        if (!isUnknownInput(news.mappingName) && (typeof news.mappingName !== "string" || !/^[A-Za-z0-9_.-]+$/.test(news.mappingName))) {
            fail("mappingName", `must be a cert auth role name of letters, digits, '_', '.' and '-' (got ${JSON.stringify(news.mappingName)})`);
        }
        if (!isUnknownInput(news.agentCertPem)) {
            try {
                parseCertificate(String(news.agentCertPem ?? ""));
            } catch {
                fail("agentCertPem", "must be a PEM certificate");
            }
        }
        const policiesProblem = stringListProblem(news.expectedPolicies, true);
        if (policiesProblem) fail("expectedPolicies", policiesProblem);
        else if (known(news.expectedPolicies) && !news.expectedPolicies.includes("default")) {
            fail("expectedPolicies", "must include \"default\" (Vault adds it to every cert login token)");
        }
        if (!isUnknownInput(news.hostState) && typeof news.hostState !== "string") fail("hostState", "must be the read-host-state script's output");
        for (const key of ["leafCommonName", "issuerCommonName"] as const) {
            if (!isUnknownInput(news[key]) && (typeof news[key] !== "string" || news[key].trim() === "")) fail(key, "must be a non-empty string");
        }
        const domainsProblem = stringListProblem(news.allowedDomains, true);
        if (domainsProblem) fail("allowedDomains", domainsProblem);
        if (!isUnknownInput(news.minRemainingSeconds) && (typeof news.minRemainingSeconds !== "number" || !Number.isFinite(news.minRemainingSeconds) || news.minRemainingSeconds < 0)) {
            fail("minRemainingSeconds", "must be a number of seconds >= 0");
        }
        return { inputs: news, failures };
    },

    // A check is an event, not an object: any new input means a new check.
    async diff(_id, olds, news) {
        const replaces = changedCheckInputs(olds, news, INPUT_KEYS);
        return { changes: replaces.length > 0, replaces };
    },

    async create(inputs) {
        const result = await runRotationCheck(inputs);
        return { id: `${inputs.app}-rotation-check-${result.leafSerial}`, outs: { ...storedHostState(inputs), ...result } };
    },

    // A refresh (drift detection) asks for the server's version again: a server
    // upgraded since the rotation shows as a new warning. The checklist itself
    // is not re-run: it describes the rotation, which is over.
    async read(id, props) {
        if (!props) throw new Error(`RotationCheck ${id}: cannot read without its previous state`);
        // The agent's version as the host reported it (older state kept the whole report).
        const agentVersion = typeof props.hostState === "string" ? parseHostState(props.hostState).agentVersion : props.agentVersion;
        return { id, props: { ...props, ...(await measureVersions(props.connection, props.app, agentVersion)) } };
    },

    // Nothing remote to undo.
    async delete() {},
};

export interface RotationCheckArgs {
    /** Where Vault is; the checks need no token (unauthenticated CA and health reads). */
    connection: pulumi.Input<VaultConnection>;
    app: pulumi.Input<string>;
    certAuthPath: pulumi.Input<string>;
    mappingName: pulumi.Input<string>;
    agentCertPem: pulumi.Input<string>;
    /** Sorted, including `default`. */
    expectedPolicies: pulumi.Input<pulumi.Input<string>[]>;
    /** stdout of the read-host-state script. */
    hostState: pulumi.Input<string>;
    leafCommonName: pulumi.Input<string>;
    allowedDomains: pulumi.Input<pulumi.Input<string>[]>;
    issuerCommonName: pulumi.Input<string>;
    pkiMount: pulumi.Input<string>;
    minRemainingSeconds: pulumi.Input<number>;
    serve?: pulumi.Input<ServeTarget>;
    revokePreviousLeaf?: pulumi.Input<boolean>;
    /** Serial (hex) of the agent cert the host held before this run ("" when none). */
    replacedAgentCertSerial?: pulumi.Input<string>;
}

// What each RotationCheck serializes as its provider: a ~1 KB forwarder to rotationCheckProvider, loaded by package name (forward.ts).
const rotationCheckForwarder = forwardingProvider("rotationCheckProvider", rotationCheckProvider);

/** The post-rotation checklist (fails the update with one line per failed item) and the version-drift warning. */
export class RotationCheck extends pulumi.dynamic.Resource {
    public readonly agentSerial!: pulumi.Output<string>;
    public readonly leafSerial!: pulumi.Output<string>;
    public readonly leafNotAfter!: pulumi.Output<string>;
    public readonly leafDaysLeft!: pulumi.Output<number>;
    public readonly previousLeafSerial!: pulumi.Output<string>;
    public readonly tokenPolicies!: pulumi.Output<string[]>;
    public readonly servedSerial!: pulumi.Output<string>;
    public readonly servedVia!: pulumi.Output<string>;
    public readonly checkedAt!: pulumi.Output<string>;
    public readonly serverVersion!: pulumi.Output<string>;
    public readonly agentVersion!: pulumi.Output<string>;
    public readonly versionMismatch!: pulumi.Output<boolean>;
    public readonly agentAhead!: pulumi.Output<boolean>;
    /** A difference between agent and server versions: logged as a warning, never a failure. */
    public readonly versionWarning!: pulumi.Output<string>;
    public readonly revokedReplacedAgentCert!: pulumi.Output<string>;
    public readonly replacedAgentCertNote!: pulumi.Output<string>;

    constructor(name: string, args: RotationCheckArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            rotationCheckForwarder,
            name,
            {
                ...args,
                agentSerial: undefined,
                leafSerial: undefined,
                leafNotAfter: undefined,
                leafDaysLeft: undefined,
                previousLeafSerial: undefined,
                tokenPolicies: undefined,
                servedSerial: undefined,
                servedVia: undefined,
                checkedAt: undefined,
                serverVersion: undefined,
                agentVersion: undefined,
                versionMismatch: undefined,
                agentAhead: undefined,
                versionWarning: undefined,
                revokedReplacedAgentCert: undefined,
                replacedAgentCertNote: undefined,
            },
            { ...opts },
            "vault-rotation",
            "RotationCheck",
        );
    }
}
