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
    /**
     * PEM bundle on the Pulumi runner that verifies Vault's listener, when the stack
     * names one (`vault:caCertFile`). Unset: the file named by VAULT_CACERT when a
     * provider runs (an ESC environment exports the CA as a file there, at a path
     * that differs per run, so it is never an input).
     */
    caCertFile?: string;
    /** Vault Enterprise namespace, if any. */
    namespace?: string;
}

/**
 * VAULT_TOKEN, else ~/.vault-token (what `vault login` writes), else undefined:
 * the same order as the vault provider plugin, so the plugin and the dynamic
 * providers act as one Vault identity in a run. In a Pulumi Deployment the ESC
 * environment the stack imports exports VAULT_TOKEN (deploy/README.md). Read at
 * call time, never captured or stored.
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
