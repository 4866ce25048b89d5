// VerificationCheck: the checks between rotations. Each app's verify step reads
// the host (read-only: nothing restarted, reloaded or moved) once per
// verification window; this resource then runs the runner's half of the
// checklist on what it read and on what Vault and a client see now: the leaf's
// names, issuer, chain and validity, that the leaf is the one the last rotation
// installed or a newer render (not an older certificate put back), that neither
// the leaf nor the agent cert is revoked and that the agent cert is the one this
// program signed, the login's policies, the post-hook's last report, the
// service, and the served certificate (direct and through the edge). Any failed
// item fails the update in the rotation check's format, and nothing of a failed
// check is kept, so the next `pulumi up` checks again.
//
// Pulumi runs this provider through a forwarder (forward.ts), like RotationCheck.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import { vaultNames } from "../lib/naming";
import { sha256Hex } from "../lib/digest";
import type { VaultConnection } from "./connection";
import { normalizeSerial, parseCertificate, splitPemCertificates, type ParsedCertificate } from "./pem";
import { asRecord, asString, clientForConnection, connectionProblems, isUnknownInput, mountPathProblem, VaultHttpError } from "./vaultClient";
import {
    checkAgentService,
    checkHostFacts,
    changedCheckInputs,
    checkReload,
    failureLine,
    type StoredHostState,
    storedHostState,
    type ServeTarget,
    type VersionReport,
} from "./rotationCheck";
import { fetchIssuingChain } from "./issuingChain";
import { checkServed, type ProbeOptions } from "./servedCert";

export interface VerificationCheckInputs {
    connection: VaultConnection;
    app: string;
    /** The verification window this check belongs to (config.verificationWindow): a new one means a new check. */
    window: string;
    certAuthPath: string;
    mappingName: string;
    /** Policies the login token must carry, exactly (including `default`). */
    expectedPolicies: string[];
    /** Output of the verify step. */
    hostState: string;
    leafCommonName: string;
    allowedDomains: string[];
    issuerCommonName: string;
    pkiMount: string;
    minRemainingSeconds: number;
    /** Serial of the agent cert this program signed last: the host must hold exactly that one. */
    expectedAgentSerial: string;
    /** Serial of the leaf the last rotation check verified: the host's may be it or a newer render, never an older one. */
    rotationLeafSerial: string;
    serve?: ServeTarget;
}

export interface VerificationResult {
    /** ISO 8601: when every item passed. */
    verifiedAt: string;
    leafSerial: string;
    leafNotAfter: string;
    leafDaysLeft: number;
    agentCertSerial: string;
    agentCertNotAfter: string;
    agentCertDaysLeft: number;
    servedSerial: string;
    servedVia: string;
}

export type VerificationCheckOutputs = StoredHostState<VerificationCheckInputs> & VerificationResult & VersionReport;

const INPUT_KEYS: readonly (keyof VerificationCheckInputs)[] = [
    "connection",
    "app",
    "window",
    "certAuthPath",
    "mappingName",
    "expectedPolicies",
    "hostState",
    "leafCommonName",
    "allowedDomains",
    "issuerCommonName",
    "pkiMount",
    "minRemainingSeconds",
    "expectedAgentSerial",
    "rotationLeafSerial",
    "serve",
];

/** The single error text of a failed verification: every failed item, then what to do. */
export function verificationFailureMessage(app: string, lines: readonly string[]): string {
    const service = vaultNames(app).service;
    return [
        `vault-rotation: the verification failed for ${app} (${lines.length} item${lines.length === 1 ? "" : "s"}; nothing was restarted or reloaded):`,
        ...lines.map((l) => `  ${l}`),
        `What to do: fix the cause above, then re-run \`pulumi up\` (the check runs again; the served certificate and Vault are asked again). To rotate the app instead, set its apps[i].epoch. For the agent side, look at its log on the host as the app user: journalctl --user -u ${service}`,
    ].join("\n");
}

function describeFailure(e: unknown): string {
    if (e instanceof VaultHttpError) return `Vault answered ${e.status}${e.errors.length > 0 ? `: ${e.errors.join("; ")}` : ""}`;
    return (e as Error).message;
}

/** What Vault's PKI holds under a serial (`<mount>/cert/<serial>`, no token): the certificate and whether it is revoked; undefined when it holds nothing. */
async function storedCertificate(connection: VaultConnection, pkiMount: string, serial: string): Promise<{ cert: ParsedCertificate; revokedAt: number } | undefined> {
    const client = clientForConnection(connection, { withToken: false });
    const res = await client.request("GET", `${pkiMount}/cert/${serial}`, undefined, { noToken: true, acceptStatus: [404] });
    if (res.status === 404) return undefined;
    const data = asRecord(asRecord(res.body).data);
    const pem = asString(data.certificate);
    if (!pem || splitPemCertificates(pem).length === 0) return undefined;
    return { cert: parseCertificate(pem), revokedAt: Number(data.revocation_time ?? 0) };
}

const days = (until: Date, now: Date) => Math.round(((until.getTime() - now.getTime()) / 86_400_000) * 10) / 10;

/** Runs every runner-side item; throws one Error listing every failure. */
export async function runVerification(inputs: VerificationCheckInputs, options: { now?: Date; probe?: ProbeOptions } = {}): Promise<VerificationResult & VersionReport> {
    const { app } = inputs;
    const { lines, host, versions, now, fullchain } = await checkHostFacts(inputs, options.now);
    const leaf = fullchain.leaf;
    const vaultLook = async (what: string, serial: string) => {
        try {
            return await storedCertificate(inputs.connection, inputs.pkiMount, serial);
        } catch (e) {
            lines.push(failureLine(app, what, `${inputs.pkiMount}/cert/${serial} readable`, describeFailure(e)));
            return undefined;
        }
    };
    // What a client must be served: the host's leaf, unless it is older than the rotation's (then that one, or newer).
    let expectedServed = leaf?.serial ?? "";
    if (leaf) {
        const stored = await vaultLook("leaf not revoked", leaf.serial);
        if (stored && stored.revokedAt > 0) {
            lines.push(failureLine(app, "leaf not revoked", `a leaf that is not revoked`, `serial ${leaf.serial}, revoked at ${new Date(stored.revokedAt * 1000).toISOString()}`));
        }
        const rotated = inputs.rotationLeafSerial ? normalizeSerial(inputs.rotationLeafSerial) : "";
        if (rotated !== "" && rotated !== leaf.serial) {
            const last = await vaultLook("leaf is current", rotated);
            if (last && leaf.notBefore.getTime() < last.cert.notBefore.getTime()) {
                lines.push(
                    failureLine(
                        app,
                        "leaf is current",
                        `the leaf the last rotation installed (serial ${rotated}, issued ${last.cert.notBefore.toISOString()}) or a newer render`,
                        `serial ${leaf.serial}, issued ${leaf.notBefore.toISOString()}: an older certificate was put in place`,
                    ),
                );
                expectedServed = rotated;
            }
        }
    }
    let agent: ParsedCertificate | undefined;
    const agentPem = splitPemCertificates(host.agentCert)[0];
    if (!agentPem) {
        lines.push(failureLine(app, "agent cert", "the agent's certificate in the verify step's report", "none"));
    } else {
        agent = parseCertificate(agentPem);
        const expected = normalizeSerial(inputs.expectedAgentSerial);
        if (agent.serial !== expected) {
            lines.push(failureLine(app, "agent cert", `serial ${expected} (the one this program signed last)`, `serial ${agent.serial} on the host`));
        }
        const stored = await vaultLook("agent cert not revoked", agent.serial);
        if (stored && stored.revokedAt > 0) {
            lines.push(failureLine(app, "agent cert not revoked", "an agent cert that is not revoked", `serial ${agent.serial}, revoked at ${new Date(stored.revokedAt * 1000).toISOString()}`));
        }
    }
    lines.push(...checkReload(app, host.reload));
    lines.push(...checkAgentService(app, host.service));

    // Served whatever else failed: what clients get is the first thing an operator asks.
    let served = { servedSerial: "", servedVia: "not checked (no serve.endpoint)" };
    if (inputs.serve && expectedServed !== "") {
        let chain: string | undefined;
        try {
            chain = await fetchIssuingChain(inputs.connection, inputs.pkiMount);
        } catch (e) {
            lines.push(failureLine(app, "served certificate", "the PKI's issuing chain to verify against", describeFailure(e)));
        }
        if (chain !== undefined) {
            const s = inputs.serve;
            const result = await checkServed({ app, endpoint: s.endpoint, commonName: inputs.leafCommonName, expectedSerial: expectedServed, caPem: chain, path: s.path, edge: s.edge }, options.probe);
            lines.push(...result.problems);
            served = { servedSerial: result.servedSerial, servedVia: result.servedVia };
        }
    }
    if (lines.length > 0) {
        const note = versions.versionWarning ? [`Also (a warning, not a failure): ${versions.versionWarning}`] : [];
        throw new Error([verificationFailureMessage(app, lines), ...note].join("\n"));
    }
    return {
        ...versions,
        verifiedAt: now.toISOString(),
        leafSerial: leaf!.serial,
        leafNotAfter: leaf!.notAfter.toISOString(),
        leafDaysLeft: days(leaf!.notAfter, now),
        agentCertSerial: agent!.serial,
        agentCertNotAfter: agent!.notAfter.toISOString(),
        agentCertDaysLeft: days(agent!.notAfter, now),
        ...served,
    };
}

export const verificationCheckProvider: pulumi.dynamic.ResourceProvider<VerificationCheckInputs, VerificationCheckOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        const fail = (property: string, reason: string) => failures.push({ property, reason });
        if (!isUnknownInput(news.app) && (typeof news.app !== "string" || !/^[a-z][a-z0-9-]*$/.test(news.app))) fail("app", `must match [a-z][a-z0-9-]* (got ${JSON.stringify(news.app)})`);
        for (const key of ["certAuthPath", "pkiMount"] as const) {
            const problem = isUnknownInput(news[key]) ? undefined : mountPathProblem(news[key]);
            if (problem) fail(key, problem);
        }
        if (!isUnknownInput(news.window) && (typeof news.window !== "string" || news.window === "")) fail("window", "must be the verification window (config.verificationWindow)");
        if (!isUnknownInput(news.expectedAgentSerial)) {
            try {
                normalizeSerial(String(news.expectedAgentSerial ?? ""));
            } catch {
                fail("expectedAgentSerial", "must be a certificate serial");
            }
        }
        if (!isUnknownInput(news.hostState) && typeof news.hostState !== "string") fail("hostState", "must be the verify step's output");
        return { inputs: news, failures };
    },

    // A verification is an event, run once for each reading of the host: the verify step's output
    // carries the time it was read, and its triggers carry the window and every expectation here
    // (a changed expectation reads the host again). Any other change (what the last rotation
    // installed and signed, above all) is an update that records the new expectation without
    // checking: facts read before a rotation must not be judged against it.
    async diff(_id, olds, news) {
        const changed = changedCheckInputs(olds, news, INPUT_KEYS);
        const replaces = changed.filter((k) => k === "hostState" || k === "window");
        return { changes: changed.length > 0, replaces };
    },

    async update(_id, olds, news) {
        // hostState is unchanged here (a new reading replaces): its digest stays (older state kept the text).
        const { hostState, ...kept } = olds;
        const digest = olds.hostStateSha256 ?? sha256Hex(hostState ?? "");
        return { outs: { ...kept, hostStateSha256: digest, ...Object.fromEntries(INPUT_KEYS.filter((k) => k !== "hostState" && news[k] !== undefined).map((k) => [k, news[k]])) } as VerificationCheckOutputs };
    },

    async create(inputs) {
        const result = await runVerification(inputs);
        return { id: `${inputs.app}-verification-${result.verifiedAt}`, outs: { ...storedHostState(inputs), ...result } };
    },

    // A refresh keeps what the last verification found: it describes that verification.
    async read(id, props) {
        if (!props) throw new Error(`VerificationCheck ${id}: cannot read without its previous state`);
        return { id, props };
    },

    async delete() {},
};

export interface VerificationCheckArgs {
    connection: pulumi.Input<VaultConnection>;
    app: pulumi.Input<string>;
    window: pulumi.Input<string>;
    certAuthPath: pulumi.Input<string>;
    mappingName: pulumi.Input<string>;
    expectedPolicies: pulumi.Input<pulumi.Input<string>[]>;
    hostState: pulumi.Input<string>;
    leafCommonName: pulumi.Input<string>;
    allowedDomains: pulumi.Input<pulumi.Input<string>[]>;
    issuerCommonName: pulumi.Input<string>;
    pkiMount: pulumi.Input<string>;
    minRemainingSeconds: pulumi.Input<number>;
    expectedAgentSerial: pulumi.Input<string>;
    rotationLeafSerial: pulumi.Input<string>;
    serve?: pulumi.Input<ServeTarget>;
}

const verificationCheckForwarder = forwardingProvider("verificationCheckProvider", verificationCheckProvider);

/** The runner's half of a verification between rotations (fails the update with one line per failed item). */
export class VerificationCheck extends pulumi.dynamic.Resource {
    public readonly verifiedAt!: pulumi.Output<string>;
    public readonly leafSerial!: pulumi.Output<string>;
    public readonly leafNotAfter!: pulumi.Output<string>;
    public readonly leafDaysLeft!: pulumi.Output<number>;
    public readonly agentCertSerial!: pulumi.Output<string>;
    public readonly agentCertNotAfter!: pulumi.Output<string>;
    public readonly agentCertDaysLeft!: pulumi.Output<number>;
    public readonly servedSerial!: pulumi.Output<string>;
    public readonly servedVia!: pulumi.Output<string>;
    public readonly serverVersion!: pulumi.Output<string>;
    public readonly agentVersion!: pulumi.Output<string>;
    public readonly versionWarning!: pulumi.Output<string>;

    constructor(name: string, args: VerificationCheckArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            verificationCheckForwarder,
            name,
            {
                ...args,
                verifiedAt: undefined,
                leafSerial: undefined,
                leafNotAfter: undefined,
                leafDaysLeft: undefined,
                agentCertSerial: undefined,
                agentCertNotAfter: undefined,
                agentCertDaysLeft: undefined,
                servedSerial: undefined,
                servedVia: undefined,
                serverVersion: undefined,
                agentVersion: undefined,
                versionMismatch: undefined,
                agentAhead: undefined,
                versionWarning: undefined,
            },
            { ...opts },
            "vault-rotation",
            "VerificationCheck",
        );
    }
}
