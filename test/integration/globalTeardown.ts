// Stops the shared integration Vault and removes its directory, whatever the
// tests did. (The exit/signal handlers in vaultServer.ts are the backstop for
// runs that never get here.)
import { TEST_VAULT_ENV } from "../support/vaultAdmin";
import { GlobalWithServer, SERVER_KEY } from "./globalSetup";

export default async function globalTeardown(): Promise<void> {
    const g = globalThis as GlobalWithServer;
    const server = g[SERVER_KEY];
    delete g[SERVER_KEY];
    for (const name of Object.values(TEST_VAULT_ENV)) delete process.env[name];
    if (server) await server.stop();
}
