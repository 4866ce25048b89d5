// The PKI role arguments both roles share. Vault's role defaults allow server
// and client use, wildcards, globs, localhost, IP SANs and (with allow_any_name)
// any name: every one of them is set explicitly here, so the agent role and the
// leaf role differ only in what they are for and the names they allow.
import type * as vault from "@pulumi/vault";

export interface RestrictedRoleInput {
    /** PKI mount the role lives on. */
    backend: string;
    /** Role name (`agent-<app>` or `nginx-<app>`). */
    name: string;
    /** `client` for agent login certs, `server` for frontend leaves; never both. */
    usage: "client" | "server";
    /** The exact names the role may issue for (bare domains, no subdomains). */
    allowedDomains: string[];
    /** TTL and max TTL in seconds. */
    ttlSeconds: number;
    /**
     * The OU every certificate of the role carries (the agent role's identity
     * mark, which its cert-auth mapping requires); none when undefined.
     */
    organizationalUnit?: string;
}

/** `SecretBackendRole` arguments with every permissive Vault default turned off. */
export function restrictedRoleArgs(i: RestrictedRoleInput): vault.pkisecret.SecretBackendRoleArgs {
    const ttl = String(i.ttlSeconds);
    return {
        backend: i.backend,
        name: i.name,
        clientFlag: i.usage === "client",
        serverFlag: i.usage === "server",
        codeSigningFlag: false,
        emailProtectionFlag: false,
        allowedDomains: i.allowedDomains,
        // Names are listed exactly, so each must be allowed as a bare domain.
        allowBareDomains: true,
        allowSubdomains: false,
        allowGlobDomains: false,
        allowWildcardCertificates: false,
        allowAnyName: false,
        allowLocalhost: false,
        allowIpSans: false,
        allowedUriSans: [],
        allowedOtherSans: [],
        enforceHostnames: true,
        // A CSR names nothing: the agent's CSR is printed by its host, which the
        // program does not trust with names, so the CN and SANs come only from
        // the program's request (the CN passed to sign; the role's names).
        useCsrCommonName: false,
        useCsrSans: false,
        keyType: "ec",
        keyBits: 256,
        keyUsages: ["DigitalSignature"],
        ttl,
        maxTtl: ttl,
        noStore: false,
        generateLease: false,
        ...(i.organizationalUnit !== undefined ? { organizationUnit: [i.organizationalUnit] } : {}),
    };
}

/** `allowBareDomains` -> `allow_bare_domains`; the two fields Vault names otherwise. */
function vaultField(name: string): string {
    const special: Record<string, string> = { keyUsages: "key_usage", organizationUnit: "ou" };
    return special[name] ?? name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The same role as Vault's API names its fields (what `GET <mount>/roles/<name>`
 * returns), for the takeover notes: derived from restrictedRoleArgs, so the
 * two cannot disagree.
 */
export function restrictedRoleVaultParams(i: RestrictedRoleInput): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(restrictedRoleArgs(i))) {
        if (key === "backend" || key === "name" || value === undefined) continue;
        out[vaultField(key)] = value;
    }
    return out;
}
