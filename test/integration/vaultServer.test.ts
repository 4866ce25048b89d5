// The harness itself, against real Vault: the shared server from globalSetup
// is in the shape production has before the program runs, and a private
// server can be started and stopped without leaving anything behind.
import { X509Certificate } from "crypto";
import * as fs from "fs";
import { setupProductionLikeVault, testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";
import { startVaultServer } from "../support/vaultServer";

const vault = testVaultFromEnv();

interface Health {
    initialized: boolean;
    sealed: boolean;
    standby: boolean;
    version: string;
}
interface Mount {
    type: string;
    options: { version?: string } | null;
}

describe("shared integration Vault", () => {
    test("is initialized, unsealed, active and runs the binary's version", async () => {
        const res = await vaultRequest<Health>(vault, "GET", "sys/health", undefined, { token: null });
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ initialized: true, sealed: false, standby: false });
        expect(res.body.version).toBe(vault.version);
        expect(vault.version).toMatch(/^\d+\.\d+\.\d+/);
    });

    test("the root token works and a wrong token is refused", async () => {
        const self = await vaultRequest<{ data: { policies: string[] } }>(vault, "GET", "auth/token/lookup-self");
        expect(self.status).toBe(200);
        expect(self.body.data.policies).toContain("root");
        const bad = await vaultRequest(vault, "GET", "auth/token/lookup-self", undefined, { token: "not-a-token" });
        expect(bad.status).toBe(403);
    });

    test("pki_int issues from 'Prod Intermediate CA', which chains to the root", async () => {
        const int = await vaultRequest<{ data: { certificate: string } }>(vault, "GET", "pki_int/cert/ca");
        const root = await vaultRequest<{ data: { certificate: string } }>(vault, "GET", "pki/cert/ca");
        expect(int.status).toBe(200);
        expect(root.status).toBe(200);
        const intCert = new X509Certificate(int.body.data.certificate);
        const rootCert = new X509Certificate(root.body.data.certificate);

        expect(intCert.subject.split("\n")).toContain("CN=Prod Intermediate CA");
        expect(intCert.ca).toBe(true);
        expect(rootCert.subject.split("\n")).toContain("CN=Prod Root CA");
        expect(rootCert.ca).toBe(true);

        expect(intCert.checkIssued(rootCert)).toBe(true);
        expect(intCert.verify(rootCert.publicKey)).toBe(true);
        expect(rootCert.verify(rootCert.publicKey)).toBe(true); // self-signed root
        expect(intCert.verify(intCert.publicKey)).toBe(false); // not self-signed
    });

    test("the PKI mounts carry the production max TTLs", async () => {
        const tune = async (m: string): Promise<number> =>
            (await vaultRequest<{ data: { max_lease_ttl: number } }>(vault, "GET", `sys/mounts/${m}/tune`)).body.data
                .max_lease_ttl;
        expect(await tune("pki")).toBe(87600 * 3600);
        expect(await tune("pki_int")).toBe(43800 * 3600);
    });

    test("secret/ is KV v2 and kv1/ is KV v1, and they behave so", async () => {
        const mounts = await vaultRequest<{ data: Record<string, Mount> }>(vault, "GET", "sys/mounts");
        expect(mounts.status).toBe(200);
        expect(mounts.body.data["secret/"]).toMatchObject({ type: "kv", options: { version: "2" } });
        expect(mounts.body.data["kv1/"]).toMatchObject({ type: "kv", options: { version: "1" } });

        // v2 wraps the payload in `data` and versions it under secret/data/...
        const w2 = await vaultRequest<{ data: { version: number } }>(vault, "POST", "secret/data/harness-check", {
            data: { hello: "v2" },
        });
        expect(w2.status).toBe(200);
        expect(w2.body.data.version).toBeGreaterThanOrEqual(1);
        const r2 = await vaultRequest<{ data: { data: { hello: string } } }>(vault, "GET", "secret/data/harness-check");
        expect(r2.body.data.data.hello).toBe("v2");

        // v1 stores the body as-is, without versions.
        const w1 = await vaultRequest(vault, "POST", "kv1/harness-check", { hello: "v1" });
        expect(w1.status).toBe(204);
        const r1 = await vaultRequest<{ data: { hello: string } }>(vault, "GET", "kv1/harness-check");
        expect(r1.body.data.hello).toBe("v1");

        await vaultRequest(vault, "DELETE", "secret/metadata/harness-check");
        await vaultRequest(vault, "DELETE", "kv1/harness-check");
    });
});

describe("startVaultServer", () => {
    test("a second server runs independently and stop() leaves nothing behind", async () => {
        const server = await startVaultServer();
        let stopped = false;
        try {
            expect(server.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
            expect(server.address).not.toBe(vault.address);
            expect(server.token).not.toBe(vault.token);
            expect(server.version).toBe(vault.version);
            expect(fs.existsSync(server.caCertFile)).toBe(true);
            expect(() => process.kill(server.pid, 0)).not.toThrow();

            const health = await vaultRequest<Health>(server, "GET", "sys/health");
            expect(health.status).toBe(200);
            expect(health.body.sealed).toBe(false);

            // The production-like setup leaves cert auth to the program under test.
            // (Checked on this private server: the shared one is used by other files.)
            await setupProductionLikeVault(server);
            const auth = await vaultRequest<{ data: Record<string, unknown> }>(server, "GET", "sys/auth");
            expect(Object.keys(auth.body.data)).not.toContain("cert/");
            expect(Object.keys(auth.body.data)).toContain("token/");

            // Each server has its own token and its own TLS CA.
            const foreign = await vaultRequest(server, "GET", "auth/token/lookup-self", undefined, {
                token: vault.token,
            });
            expect(foreign.status).toBe(403);
            await expect(
                vaultRequest({ address: server.address, caCertFile: vault.caCertFile }, "GET", "sys/health"),
            ).rejects.toThrow();

            await server.stop();
            stopped = true;
            expect(() => process.kill(server.pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
            expect(fs.existsSync(server.dir)).toBe(false);
            await expect(server.stop()).resolves.toBeUndefined(); // idempotent
        } finally {
            if (!stopped) await server.stop();
        }
    });
});
