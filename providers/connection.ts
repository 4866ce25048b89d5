// How dynamic providers reach Vault. Only non-secret coordinates are resource
// inputs (and so live in state); the token is resolved when a provider method
// runs, from the environment of the Pulumi process, and is never stored.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** Where Vault is and how to trust its listener. Stored in state: no secrets here. */
export interface VaultConnection {
    /** `https://host:port` */
    address: string;
    /** PEM bundle on the Pulumi runner that verifies Vault's listener. */
    caCertFile?: string;
    /** Vault Enterprise namespace, if any. */
    namespace?: string;
    /**
     * Unattended runs: log in through Vault's JWT auth method with the OIDC token
     * of the Pulumi Deployment (PULUMI_OIDC_TOKEN, or the file /mnt/pulumi/pulumi.oidc)
     * when no VAULT_TOKEN is set. Names only; the JWT itself is read at call time.
     */
    jwtAuth?: { mount: string; role: string };
}

/** The Deployment's OIDC token, when the Pulumi process has one. */
export function readOidcToken(): string | undefined {
    const fromEnv = process.env.PULUMI_OIDC_TOKEN;
    if (fromEnv && fromEnv.trim() !== "") return fromEnv.trim();
    const file = process.env.VAULT_ROTATION_OIDC_TOKEN_FILE ?? "/mnt/pulumi/pulumi.oidc";
    if (fs.existsSync(file)) {
        const token = fs.readFileSync(file, "utf8").trim();
        if (token !== "") return token;
    }
    return undefined;
}

/**
 * VAULT_TOKEN, else ~/.vault-token (what `vault login` writes), else undefined.
 * Read at call time, never captured or stored; `tokenForConnection` in
 * vaultClient.ts adds the JWT login for Deployments.
 */
export function findVaultToken(): string | undefined {
    const fromEnv = process.env.VAULT_TOKEN;
    if (fromEnv && fromEnv.trim() !== "") return fromEnv.trim();
    const file = path.join(process.env.HOME || os.homedir(), ".vault-token");
    if (fs.existsSync(file)) {
        const token = fs.readFileSync(file, "utf8").trim();
        if (token !== "") return token;
    }
    return undefined;
}
