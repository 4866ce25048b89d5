// Version drift: the Vault Agent version on an app's host against the server's.
// A difference is a warning, never a failure: agents and servers are upgraded at
// different times, and the operator decides. Used by RotationCheck (which took
// over the former VersionDrift resource: both were replaced together after
// every rotation).
import type { VaultConnection } from "./connection";
import { asRecord, asString, clientForConnection } from "./vaultClient";

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

/** The verdict for one app. */
export interface VersionDriftVerdict {
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
): VersionDriftVerdict {
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
