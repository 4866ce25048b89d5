// The guardrails of the `vault-rotation-guardrails` policy pack as pure functions:
// a resource (type, name, inputs) and the pack's config in, violation messages out.
// No Pulumi runtime and no @pulumi/policy here, so jest can call every rule directly;
// policy/index.ts only adapts the CrossGuard callbacks to these functions.
import { isIP } from "net";

/** Resource types the rules look at (the provider SDKs' `__pulumiType` tokens). */
export const TYPES = {
    pkiRole: "vault:pkiSecret/secretBackendRole:SecretBackendRole",
    certAuthRole: "vault:index/certAuthBackendRole:CertAuthBackendRole",
    localCommand: "command:local:Command",
    remoteCommand: "command:remote:Command",
    stack: "pulumi:pulumi:Stack",
} as const;

/** Policy names: a public contract (operators configure and disable policies by them). */
export const POLICY_NAMES = {
    leafRoleServerOnly: "leaf-role-server-only",
    agentRoleClientOnly: "agent-role-client-only",
    noPermissiveNames: "no-permissive-names",
    ttlCaps: "ttl-caps",
    noDebugPolicyInProd: "no-debug-policy-in-prod",
    noKeyMaterialInCommands: "no-key-material-in-commands",
    noKeyMaterialInOutputs: "no-key-material-in-outputs",
    remoteHostKeyPinned: "remote-host-key-pinned",
} as const;

/** Role-name prefixes the program uses (lib/naming.ts `vaultNames`; a stack's namePrefix comes after them). */
export const AGENT_ROLE_PREFIX = "agent-";
export const LEAF_ROLE_PREFIX = "nginx-";
export const DEBUG_POLICY = "debug-policy";
export const PROD_STACK = "prod";

/** Caps of `ttl-caps`, in seconds. */
export interface TtlCaps {
    maxAgentTtlSeconds: number;
    maxLeafTtlSeconds: number;
}

export const DEFAULT_TTL_CAPS: TtlCaps = {
    maxAgentTtlSeconds: 14 * 24 * 3600, // 1209600
    maxLeafTtlSeconds: 90 * 24 * 3600, // 7776000
};

/** One resource as a rule sees it: its type token, logical name and inputs. */
export interface RuleResource {
    type: string;
    /** The Pulumi logical name (used in messages). */
    name: string;
    props: Record<string, unknown>;
}

type Props = Record<string, unknown>;

/** Resolves the pack config for `ttl-caps`: configured values win, defaults fill the gaps. */
export function resolveTtlCaps(config: Partial<Record<keyof TtlCaps, unknown>> | undefined): TtlCaps {
    const pick = (key: keyof TtlCaps): number => {
        const v = config?.[key];
        return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : DEFAULT_TTL_CAPS[key];
    };
    return { maxAgentTtlSeconds: pick("maxAgentTtlSeconds"), maxLeafTtlSeconds: pick("maxLeafTtlSeconds") };
}

/**
 * The stack name inside a URN (`urn:pulumi:<stack>::<project>::<type>::<name>`).
 * The policy SDK (1.21) receives the stack name from the engine but does not pass it
 * to policies; every resource URN carries it, so the rules read it from there.
 */
export function stackFromUrn(urn: string): string | undefined {
    const m = /^urn:pulumi:([^:]+)::/.exec(urn);
    return m ? m[1] : undefined;
}

// ---------------------------------------------------------------------------
// PKI roles
// ---------------------------------------------------------------------------

type RoleKind = "agent" | "leaf" | "other";

function roleKind(props: Props): RoleKind {
    const name = props.name;
    if (typeof name !== "string") return "other";
    if (name.startsWith(AGENT_ROLE_PREFIX)) return "agent";
    if (name.startsWith(LEAF_ROLE_PREFIX)) return "leaf";
    return "other";
}

function roleLabel(r: RuleResource): string {
    const vaultName = typeof r.props.name === "string" ? r.props.name : "<unnamed>";
    return `PKI role "${vaultName}" (resource "${r.name}")`;
}

/** The value Vault uses for a boolean role field: the input, else Vault's default. */
function effectiveBool(props: Props, field: string, vaultDefault: boolean): boolean {
    const v = props[field];
    return typeof v === "boolean" ? v : vaultDefault;
}

function describeBool(props: Props, field: string): string {
    const v = props[field];
    return typeof v === "boolean" ? String(v) : "unset (Vault default true)";
}

/** `leaf-role-server-only`: `nginx-*` roles issue server certs only. */
export function checkLeafRoleServerOnly(r: RuleResource): string[] {
    if (r.type !== TYPES.pkiRole || roleKind(r.props) !== "leaf") return [];
    const out: string[] = [];
    // Vault defaults both server_flag and client_flag to true: unset counts as true.
    if (!effectiveBool(r.props, "serverFlag", true)) {
        out.push(`${roleLabel(r)}: serverFlag must be true for a leaf role, got ${describeBool(r.props, "serverFlag")}`);
    }
    if (effectiveBool(r.props, "clientFlag", true)) {
        out.push(`${roleLabel(r)}: clientFlag must be false for a leaf role, got ${describeBool(r.props, "clientFlag")}`);
    }
    return out;
}

/** `agent-role-client-only`: `agent-*` roles issue client certs only. */
export function checkAgentRoleClientOnly(r: RuleResource): string[] {
    if (r.type !== TYPES.pkiRole || roleKind(r.props) !== "agent") return [];
    const out: string[] = [];
    if (!effectiveBool(r.props, "clientFlag", true)) {
        out.push(`${roleLabel(r)}: clientFlag must be true for an agent role, got ${describeBool(r.props, "clientFlag")}`);
    }
    if (effectiveBool(r.props, "serverFlag", true)) {
        out.push(`${roleLabel(r)}: serverFlag must be false for an agent role, got ${describeBool(r.props, "serverFlag")}`);
    }
    return out;
}

/**
 * Role fields that widen the names a role may issue, with Vault's default for each.
 * Unset counts as the default, so the three that default to true must be set to false.
 */
export const PERMISSIVE_FLAGS: ReadonlyArray<{ field: string; vaultDefault: boolean }> = [
    { field: "allowWildcardCertificates", vaultDefault: true },
    { field: "allowLocalhost", vaultDefault: true },
    { field: "allowIpSans", vaultDefault: true },
    { field: "allowGlobDomains", vaultDefault: false },
    { field: "allowAnyName", vaultDefault: false },
];

/** Why an allowed-domain entry is too broad, or undefined when it is a plain DNS name. */
export function permissiveDomainReason(entry: string): string | undefined {
    const trimmed = entry.trim();
    if (trimmed.includes("*")) return "contains a wildcard/glob '*'";
    // An IP literal, possibly bracketed (IPv6) or with a CIDR suffix.
    const bare = trimmed.replace(/^\[(.*)\]$/, "$1").replace(/\/\d{1,3}$/, "");
    if (isIP(bare) !== 0) return "is an IP address";
    if (trimmed.toLowerCase().split(".").includes("localhost")) return "names localhost";
    return undefined;
}

/** `no-permissive-names`: no wildcard, glob, any-name, localhost or IP issuance on any PKI role. */
export function checkNoPermissiveNames(r: RuleResource): string[] {
    if (r.type !== TYPES.pkiRole) return [];
    const out: string[] = [];
    for (const { field, vaultDefault } of PERMISSIVE_FLAGS) {
        if (effectiveBool(r.props, field, vaultDefault)) {
            const got = typeof r.props[field] === "boolean" ? "true" : "unset (Vault default true)";
            out.push(`${roleLabel(r)}: ${field} must be false, got ${got}`);
        }
    }
    for (const field of ["allowedDomains", "allowedUriSans", "allowedOtherSans"]) {
        const list = r.props[field];
        if (!Array.isArray(list)) continue;
        list.forEach((entry: unknown, i: number) => {
            if (typeof entry !== "string") return;
            // URI and other SANs are not DNS names: only the wildcard check applies to them.
            const reason = field === "allowedDomains" ? permissiveDomainReason(entry) : entry.includes("*") ? "contains a wildcard/glob '*'" : undefined;
            if (reason) out.push(`${roleLabel(r)}: ${field}[${i}] "${entry}" ${reason}`);
        });
    }
    return out;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Seconds of a Vault TTL: a number, a string of seconds ("259200") or a duration
 * ("72h", "1h30m"). `undefined` when unset, "" or 0 (Vault then falls back to the
 * mount/system value); `NaN` when it cannot be read.
 */
export function ttlSeconds(value: unknown): number | undefined {
    if (value === undefined || value === null || value === "") return undefined;
    let secs: number;
    if (typeof value === "number") {
        secs = value;
    } else if (typeof value === "string" && /^\s*\d+\s*$/.test(value)) {
        secs = Number(value);
    } else if (typeof value === "string" && /^(\d+[smhd])+$/.test(value.trim())) {
        secs = 0;
        for (const [, n, unit] of value.trim().matchAll(/(\d+)([smhd])/g)) secs += Number(n) * DURATION_UNITS[unit];
    } else {
        return NaN;
    }
    if (!Number.isFinite(secs) || secs < 0) return NaN;
    return secs === 0 ? undefined : secs;
}

/** `ttl-caps`: agent and leaf roles carry an explicit maxTtl, and ttl/maxTtl stay under the caps. */
export function checkTtlCaps(r: RuleResource, config?: Partial<Record<keyof TtlCaps, unknown>>): string[] {
    if (r.type !== TYPES.pkiRole) return [];
    const kind = roleKind(r.props);
    if (kind === "other") return [];
    const caps = resolveTtlCaps(config);
    const cap = kind === "agent" ? caps.maxAgentTtlSeconds : caps.maxLeafTtlSeconds;
    const capName = kind === "agent" ? "maxAgentTtlSeconds" : "maxLeafTtlSeconds";
    const out: string[] = [];
    for (const field of ["ttl", "maxTtl"]) {
        const raw = r.props[field];
        const secs = ttlSeconds(raw);
        if (secs === undefined) {
            // An unset ttl is bounded by maxTtl; an unset maxTtl falls back to the mount's max.
            if (field === "maxTtl") {
                out.push(`${roleLabel(r)}: maxTtl must be set (at most ${cap}s); unset, Vault falls back to the mount's max lease TTL`);
            }
        } else if (Number.isNaN(secs)) {
            out.push(`${roleLabel(r)}: ${field} ${JSON.stringify(raw)} is not a TTL in seconds or a duration`);
        } else if (secs > cap) {
            out.push(`${roleLabel(r)}: ${field} ${secs}s exceeds ${capName} ${cap}s`);
        }
    }
    return out;
}

// ---------------------------------------------------------------------------
// Cert-auth mappings
// ---------------------------------------------------------------------------

/**
 * `no-debug-policy-in-prod`: no cert-auth mapping grants `debug-policy` on the `prod`
 * stack or a shard of it (`prod-<shard>`), where it is `<namePrefix>-debug-policy`.
 */
export function checkNoDebugPolicyInProd(r: RuleResource, stack: string | undefined): string[] {
    if (r.type !== TYPES.certAuthRole || stack === undefined || (stack !== PROD_STACK && !stack.startsWith(`${PROD_STACK}-`))) return [];
    const policies = r.props.tokenPolicies;
    const debug = Array.isArray(policies) ? policies.find((p) => typeof p === "string" && (p === DEBUG_POLICY || p.endsWith(`-${DEBUG_POLICY}`))) : undefined;
    if (debug === undefined) return [];
    const vaultName = typeof r.props.name === "string" ? r.props.name : "<unnamed>";
    return [`cert-auth mapping "${vaultName}" (resource "${r.name}"): tokenPolicies contains "${debug}", which is not allowed on stack "${stack}"`];
}

// ---------------------------------------------------------------------------
// Key material
// ---------------------------------------------------------------------------

/** A PEM private key header: PKCS#8, RSA, EC, DSA, OPENSSH, ENCRYPTED... */
const PEM_PRIVATE_KEY = /-----BEGIN[ \t]+(?:[A-Z0-9]+[ \t]+)*PRIVATE[ \t]+KEY-----/;
/** A run of base64 long enough to hide a key (a PEM header alone is 30+ characters). */
const BASE64_RUN = /[A-Za-z0-9+/_-]{40,}={0,2}/g;

/** True when the text holds a PEM private key, in clear or as a base64-encoded PEM. */
export function containsPrivateKey(text: string): boolean {
    if (PEM_PRIVATE_KEY.test(text)) return true;
    for (const [run] of text.matchAll(BASE64_RUN)) {
        const decoded = Buffer.from(run, run.includes("-") || run.includes("_") ? "base64url" : "base64").toString("latin1");
        if (PEM_PRIVATE_KEY.test(decoded)) return true;
    }
    return false;
}

/**
 * Paths (`environment.KEY`, `triggers[2].pem`) of every string under `value` that holds
 * a private key. Walks arrays and plain objects; other values are ignored.
 */
export function findPrivateKeyPaths(value: unknown, path: string): string[] {
    if (typeof value === "string") return containsPrivateKey(value) ? [path] : [];
    if (Array.isArray(value)) return value.flatMap((v, i) => findPrivateKeyPaths(v, `${path}[${i}]`));
    if (value !== null && typeof value === "object") {
        return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) =>
            findPrivateKeyPaths(v, path === "" ? k : `${path}.${k}`),
        );
    }
    return [];
}

/**
 * The one command input that may carry key material: `connection`, the SSH
 * credentials of `command:remote` (used by the provider, never run). Not even
 * `stdin`: the agent key is generated on its host, so no step is ever sent a key,
 * and a command's inputs are kept in Pulumi state.
 */
export const COMMAND_KEY_ALLOWED_INPUTS: readonly string[] = ["connection"];

/**
 * `no-key-material-in-commands`: no private key in a command's create/update/delete,
 * stdin, environment, triggers, interpreter or any other input but `connection`.
 */
export function checkNoKeyMaterialInCommands(r: RuleResource): string[] {
    if (r.type !== TYPES.localCommand && r.type !== TYPES.remoteCommand) return [];
    const out: string[] = [];
    for (const [field, value] of Object.entries(r.props)) {
        if (COMMAND_KEY_ALLOWED_INPUTS.includes(field)) continue;
        for (const path of findPrivateKeyPaths(value, field)) {
            out.push(`command "${r.name}" (${r.type}): ${path} contains PEM private key material; keys are generated on the host and never sent to it`);
        }
    }
    return out;
}

/** A pinned host key as `connection.hostKey` takes it: `<type> <base64>`. */
const HOST_KEY_LINE = /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}$/;

/**
 * `remote-host-key-pinned`: every `command:remote` connection pins the host's key.
 * Without `connection.hostKey` the command provider accepts any host key, so
 * whoever answers at that address runs the steps and hands back the CSR that
 * Vault signs as the app's agent certificate.
 */
export function checkRemoteHostKeyPinned(r: RuleResource): string[] {
    if (r.type !== TYPES.remoteCommand) return [];
    const connection = r.props.connection as Props | undefined;
    const key = connection?.hostKey;
    if (typeof key === "string" && HOST_KEY_LINE.test(key)) return [];
    const got = key === undefined ? "unset" : JSON.stringify(typeof key === "string" ? key.slice(0, 40) : key);
    return [
        `command "${r.name}" (${r.type}): connection.hostKey must pin the host's key as '<type> <base64>' (got ${got}); without it any host answering at that address runs the steps and has its own key signed as the app's agent`,
    ];
}

/**
 * Part of `no-key-material-in-outputs`: a host step's stdout and stderr are kept in
 * state and shown by `pulumi stack export`; steps print public facts only (a CSR,
 * certificate blocks, one status line), so a private key there means a step leaked one.
 */
export function checkNoKeyMaterialInCommandOutput(r: RuleResource): string[] {
    if (r.type !== TYPES.localCommand && r.type !== TYPES.remoteCommand) return [];
    return ["stdout", "stderr"].flatMap((field) =>
        findPrivateKeyPaths(r.props[field], field).map(
            (path) => `command "${r.name}" (${r.type}): ${path} contains PEM private key material; a host step prints public facts only (its output is kept in state)`,
        ),
    );
}

/** `no-key-material-in-outputs`: no stack output (at any depth) holds a private key. */
export function checkNoKeyMaterialInOutputs(outputs: Record<string, unknown>): string[] {
    return findPrivateKeyPaths(outputs, "").map(
        (path) => `stack output "${path}" contains PEM private key material; export a fingerprint or serial instead`,
    );
}
