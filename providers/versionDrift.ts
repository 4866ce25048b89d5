// VersionDrift: compares the Vault Agent version on an app's host with the
// server's. A difference is a warning in the outputs, never a failure: agents
// and servers are upgraded at different times, and the operator decides.
//
// Local helpers are imported at the top on purpose: Pulumi serializes these
// methods together with the local functions they call. A relative `require`
// inside a method would resolve against the provider host's working directory
// (and could not load a .ts file there). Nothing imported holds state.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import { asRecord, asString, changedKeys, clientForConnection, connectionProblems, isUnknownInput } from "./vaultClient";

export interface VaultVersion {
    major: number;
    minor: number;
    patch: number;
    /** e.g. `rc1`, "" for a release. */
    prerelease: string;
    /** Build metadata such as `ent`, `prem`, `ent.hsm`; ignored when comparing. */
    metadata: string;
    /** `1.21.1+ent` */
    text: string;
}

export interface VersionDriftInputs {
    connection: VaultConnection;
    app: string;
    /** First line of `vault version` on the app's host, or "" when unknown. */
    agentVersionText: string;
}

export interface VersionDriftOutputs extends VersionDriftInputs {
    /** "" when the server does not say (redacted). */
    serverVersion: string;
    /** "" when the host did not say. */
    agentVersion: string;
    mismatch: boolean;
    /** The agent is at least one minor version newer than the server. */
    agentAhead: boolean;
    /** "" when the versions are equal or the agent's is unknown. */
    warning: string;
}

/**
 * Finds a Vault version in text such as `Vault v1.21.1 (abc), built ...`,
 * `1.15.2+ent.hsm` or `v1.16.0-rc1`. Undefined when there is none (e.g. the
 * server redacts its version).
 */
export function parseVaultVersion(text: string | undefined): VaultVersion | undefined {
    if (!text) return undefined;
    const m = /(?:^|[^0-9A-Za-z.])v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?/.exec(text);
    if (!m) return undefined;
    const [, major, minor, patch, prerelease = "", metadata = ""] = m;
    return {
        major: Number(major),
        minor: Number(minor),
        patch: Number(patch),
        prerelease,
        metadata,
        text: `${major}.${minor}.${patch}${prerelease ? `-${prerelease}` : ""}${metadata ? `+${metadata}` : ""}`,
    };
}

/** -1, 0 or 1 by major, minor, patch, then prerelease (a release sorts after its prereleases); build metadata is ignored. */
export function compareVersions(a: VaultVersion, b: VaultVersion): -1 | 0 | 1 {
    for (const k of ["major", "minor", "patch"] as const) {
        if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
    }
    if (a.prerelease === b.prerelease) return 0;
    if (a.prerelease === "") return 1;
    if (b.prerelease === "") return -1;
    return a.prerelease.localeCompare(b.prerelease, "en", { numeric: true }) < 0 ? -1 : 1;
}

const RETEST = "re-test cert auth login, token renewal and template rendering after Vault upgrades";

/** The drift verdict for one app: never throws, a difference is a warning. */
export function versionDrift(
    app: string,
    server: VaultVersion | undefined,
    agent: VaultVersion | undefined,
): Pick<VersionDriftOutputs, "mismatch" | "agentAhead" | "warning"> {
    if (!agent) return { mismatch: false, agentAhead: false, warning: "" };
    if (!server) {
        return {
            mismatch: false,
            agentAhead: false,
            warning: `${app}: the Vault server version is unknown (sys/health gave none; it may be redacted), Vault Agent is ${agent.text}; ${RETEST}`,
        };
    }
    const order = compareVersions(agent, server);
    if (order === 0) return { mismatch: false, agentAhead: false, warning: "" };
    const agentAhead = agent.major > server.major || (agent.major === server.major && agent.minor - server.minor >= 1);
    const warning = agentAhead
        ? `${app}: Vault Agent ${agent.text} is a minor version or more AHEAD of the Vault server ${server.text}; an agent newer than its server is not a supported pairing: upgrade the server first or run an agent at ${server.major}.${server.minor}.x, and ${RETEST}`
        : `${app}: Vault Agent ${agent.text} differs from the Vault server ${server.text}; ${RETEST}`;
    return { mismatch: true, agentAhead, warning };
}

/** The server version from `sys/health?standbyok=true`; undefined when redacted or absent. */
export async function readServerVersion(connection: VaultConnection): Promise<VaultVersion | undefined> {
    const client = clientForConnection(connection, { withToken: false });
    // Standbys and DR/performance secondaries answer with these codes and a normal body.
    const res = await client.request("GET", "sys/health", undefined, { query: { standbyok: "true" }, noToken: true, acceptStatus: [429, 472, 473] });
    return parseVaultVersion(asString(asRecord(res.body).version));
}

async function measure(inputs: VersionDriftInputs): Promise<VersionDriftOutputs> {
    const server = await readServerVersion(inputs.connection);
    const agent = parseVaultVersion(inputs.agentVersionText);
    return {
        connection: inputs.connection,
        app: inputs.app,
        agentVersionText: inputs.agentVersionText,
        serverVersion: server?.text ?? "",
        agentVersion: agent?.text ?? "",
        ...versionDrift(inputs.app, server, agent),
    };
}

export const versionDriftProvider: pulumi.dynamic.ResourceProvider<VersionDriftInputs, VersionDriftOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        if (!isUnknownInput(news.app) && (typeof news.app !== "string" || !/^[a-z][a-z0-9-]*$/.test(news.app))) {
            failures.push({ property: "app", reason: `must match [a-z][a-z0-9-]* (got ${JSON.stringify(news.app)})` });
        }
        if (!isUnknownInput(news.agentVersionText) && typeof news.agentVersionText !== "string") {
            failures.push({ property: "agentVersionText", reason: "must be a string (the first line of `vault version`, or \"\")" });
        }
        return { inputs: news, failures };
    },

    // Nothing here is a remote object to rebuild: every change is a re-measurement.
    async diff(_id, olds, news) {
        return { changes: changedKeys(olds, news, ["connection", "app", "agentVersionText"]).length > 0, replaces: [] };
    },

    async create(inputs) {
        return { id: `${inputs.app}-version-drift`, outs: await measure(inputs) };
    },

    async update(_id, _olds, news) {
        return { outs: await measure(news) };
    },

    // The server can be upgraded behind our back: refresh measures again.
    async read(id, props) {
        if (!props) throw new Error(`VersionDrift ${id}: cannot read without its previous state`);
        return { id, props: await measure(props) };
    },

    async delete() {},
};

export interface VersionDriftArgs {
    /** Where Vault is; sys/health needs no token. */
    connection: pulumi.Input<VaultConnection>;
    /** App name, used in the warning. */
    app: pulumi.Input<string>;
    /** First line of `vault version` on the app's host, or "". */
    agentVersionText: pulumi.Input<string>;
}

// What each VersionDrift serializes as its provider: a ~1 KB forwarder to versionDriftProvider, loaded by package name (forward.ts).
const versionDriftForwarder = forwardingProvider("versionDriftProvider", versionDriftProvider);

/** Vault Agent vs server version; a mismatch is reported in `warning`, never an error. */
export class VersionDrift extends pulumi.dynamic.Resource {
    public readonly serverVersion!: pulumi.Output<string>;
    public readonly agentVersion!: pulumi.Output<string>;
    public readonly mismatch!: pulumi.Output<boolean>;
    public readonly agentAhead!: pulumi.Output<boolean>;
    public readonly warning!: pulumi.Output<string>;

    constructor(name: string, args: VersionDriftArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            versionDriftForwarder,
            name,
            { ...args, serverVersion: undefined, agentVersion: undefined, mismatch: undefined, agentAhead: undefined, warning: undefined },
            { ...opts },
            "vault-rotation",
            "VersionDrift",
        );
    }
}
