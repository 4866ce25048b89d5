// Jest global setup for the `integration` project: one dev-TLS Vault for all
// integration test files. It runs in Jest's parent process; the workers learn
// about the server through environment variables, which they inherit.
import { setupProductionLikeVault, TEST_VAULT_ENV } from "../support/vaultAdmin";
import { startVaultServer, VaultServer } from "../support/vaultServer";

/** Handle for globalTeardown; globalSetup and globalTeardown share the parent's globalThis. */
export const SERVER_KEY = "__vaultRotationTestServer";

export type GlobalWithServer = typeof globalThis & { [SERVER_KEY]?: VaultServer };

export default async function globalSetup(): Promise<void> {
    const log = (line: string): void => {
        process.stderr.write(`[integration vault] ${line}\n`);
    };
    // startVaultServer cleans up after itself when it fails; its error carries
    // the reason (get-vault.sh's message, or the server log's last lines).
    const server = await startVaultServer({ log });
    try {
        await setupProductionLikeVault(server);
    } catch (e) {
        // Jest does not run globalTeardown when globalSetup throws.
        await server.stop();
        throw e;
    }
    (globalThis as GlobalWithServer)[SERVER_KEY] = server;

    process.env[TEST_VAULT_ENV.addr] = server.address;
    process.env[TEST_VAULT_ENV.ca] = server.caCertFile;
    process.env[TEST_VAULT_ENV.token] = server.token;
    process.env[TEST_VAULT_ENV.bin] = server.vaultBin;
    process.env[TEST_VAULT_ENV.version] = server.version;
}
