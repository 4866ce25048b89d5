// Vault ACL policies, as pure functions. Paths come from validated config
// (mount and app name patterns), and are quoted as HCL strings.
import { hclString } from "./quote";

function rule(path: string, capabilities: string[]): string {
    return `path ${hclString(path)} {\n  capabilities = [${capabilities.map((c) => hclString(c)).join(", ")}]\n}\n`;
}

/** `<app>-issue`: the agent may issue leaf certs under its own `nginx-<app>` role, nothing else. */
export function renderIssuePolicy(pkiMount: string, leafRole: string): string {
    return `# Lets the Vault Agent issue its app's frontend leaf certificate.\n` + rule(`${pkiMount}/issue/${leafRole}`, ["update"]);
}

/**
 * `<app>-marker`: grants nothing beyond the default policy. Its presence on a
 * login token proves the cert mapping carries this app's policy list.
 */
export function renderMarkerPolicy(app: string): string {
    return `# Marker for ${app}: proves the cert-auth mapping attaches this app's policies.\n` + rule("auth/token/lookup-self", ["read"]);
}

/** `debug-policy`: read-only introspection, never on a prod mapping (strict mode). */
export function renderDebugPolicy(): string {
    return `# Debugging aid: read-only token and capability introspection.\n` + rule("auth/token/lookup-self", ["read"]) + rule("sys/capabilities-self", ["update"]);
}

/**
 * `<app>-kv`: read access to the app's own KV subtree.
 * Both `apps/<app>` and `apps/<app>/*` are listed: the glob alone would not match
 * the seeded secret itself, and `apps/<app>*` would leak into `apps/<app>-other`.
 */
export function renderKvPolicy(kvMount: string, app: string, version: "1" | "2"): string {
    const header = `# KV v${version} access for ${app}: its own subtree only.\n`;
    if (version === "2") {
        return (
            header +
            rule(`${kvMount}/data/apps/${app}`, ["read"]) +
            rule(`${kvMount}/data/apps/${app}/*`, ["read"]) +
            rule(`${kvMount}/metadata/apps/${app}`, ["list", "read"]) +
            rule(`${kvMount}/metadata/apps/${app}/*`, ["list", "read"])
        );
    }
    return header + rule(`${kvMount}/apps/${app}`, ["read", "list"]) + rule(`${kvMount}/apps/${app}/*`, ["read", "list"]);
}
