import { createVaultClient, VaultHttpError, VaultNetworkError } from "../../../providers/vaultClient";
import { routes, startHttpsServer, unusedLoopbackPort, type TestHttpsServer } from "../../support/httpsServer";
import { makeListenerTls, TestPki, type TestCert } from "../../support/tls";

const TOKEN = "hvs.unit-test-token-0123456789";

let pki: TestPki;
let listener: ReturnType<typeof makeListenerTls>;
let server: TestHttpsServer;
let clientCa: TestCert;
let clientCert: TestCert;

beforeAll(async () => {
    pki = TestPki.create();
    listener = makeListenerTls(pki);
    clientCa = pki.rootCa("Client CA");
    clientCert = pki.issue({ issuer: clientCa, commonName: "agent-a.prod.internal", usage: ["clientAuth"] });
    server = await startHttpsServer({ keyPem: listener.server.keyPem, certPem: listener.server.certPem, clientCaPem: clientCa.certPem });
});

afterAll(async () => {
    await server.close();
    pki.cleanup();
});

beforeEach(() => {
    server.requests.length = 0;
});

function client(extra: Partial<Parameters<typeof createVaultClient>[0]> = {}) {
    return createVaultClient({ address: server.address, caCertFile: listener.caFile, token: TOKEN, retryBaseMs: 1, ...extra });
}

describe("requests", () => {
    test("read sends the token and namespace under /v1/ and returns the JSON answer", async () => {
        server.setHandler(routes({ "GET secret/data/apps/app-a": { json: { data: { data: { k: "v" } } } } }));
        const body = await client({ namespace: "team/prod" }).read("secret/data/apps/app-a");
        expect(body).toEqual({ data: { data: { k: "v" } } });
        expect(server.requests).toHaveLength(1);
        expect(server.requests[0].headers["x-vault-token"]).toBe(TOKEN);
        expect(server.requests[0].headers["x-vault-namespace"]).toBe("team/prod");
    });

    test("read answers undefined on 404", async () => {
        server.setHandler(routes({}));
        await expect(client().read("secret/metadata/apps/none")).resolves.toBeUndefined();
    });

    test("write POSTs the JSON body", async () => {
        server.setHandler(routes({ "POST pki_int/revoke": { json: { data: { revocation_time: 1 } } } }));
        const res = await client().write("pki_int/revoke", { serial_number: "3a:1f" });
        expect(res).toEqual({ data: { revocation_time: 1 } });
        expect(server.requests[0].body).toEqual({ serial_number: "3a:1f" });
        expect(server.requests[0].headers["content-type"]).toBe("application/json");
    });

    test("list asks with ?list=true and returns data.keys, or [] on 404", async () => {
        server.setHandler(routes({ "GET secret/metadata/apps": { json: { data: { keys: ["app-a", "app-b/"] } } } }));
        await expect(client().list("secret/metadata/apps")).resolves.toEqual(["app-a", "app-b/"]);
        expect(server.requests[0].query).toEqual({ list: "true" });
        await expect(client().list("secret/metadata/none")).resolves.toEqual([]);
    });

    test("delete treats 404 as already deleted", async () => {
        server.setHandler(routes({}));
        await expect(client().delete("sys/policy/none")).resolves.toBeUndefined();
        expect(server.requests[0].method).toBe("DELETE");
    });

    test("noToken leaves the token out; a call that needs one fails without a request", async () => {
        server.setHandler(routes({ "GET sys/health": { json: { version: "1.21.1" } } }));
        await client().request("GET", "sys/health", undefined, { noToken: true });
        expect(server.requests[0].headers["x-vault-token"]).toBeUndefined();
        await expect(client({ token: undefined }).read("sys/mounts")).rejects.toThrow("Vault GET sys/mounts: no token given to the client");
        expect(server.requests).toHaveLength(1);
    });

    test("presents the client certificate for mTLS", async () => {
        server.setHandler(routes({ "POST auth/cert/login": { json: { auth: { client_token: "x" } } } }));
        await client({ clientCertPem: clientCert.certPem, clientKeyPem: clientCert.keyPem }).request("POST", "auth/cert/login", { name: "agent-app-a" }, { noToken: true });
        expect(server.requests[0].clientCertCN).toBe("agent-a.prod.internal");
        expect(server.requests[0].clientCertAuthorized).toBe(true);
    });

    test("a non-JSON answer comes back as text", async () => {
        server.setHandler(routes({ "GET pki_int/ca/pem": { text: "-----BEGIN CERTIFICATE-----\n..." } }));
        const res = await client().request("GET", "pki_int/ca/pem");
        expect(res).toEqual({ status: 200, body: "-----BEGIN CERTIFICATE-----\n..." });
    });
});

describe("retries", () => {
    test("retries after a connection reset, then succeeds", async () => {
        server.setHandler((_req, i) => (i === 0 ? { destroy: true } : { json: { data: { ok: true } } }));
        await expect(client().read("secret/x")).resolves.toEqual({ data: { ok: true } });
        expect(server.requests).toHaveLength(2);
    });

    test("retries on 503 and 429, then succeeds", async () => {
        server.setHandler((_req, i) => (i === 0 ? { status: 503, json: { errors: ["Vault is sealed"] } } : i === 1 ? { status: 429, json: { errors: [] } } : { json: { data: {} } }));
        await expect(client().read("secret/x")).resolves.toEqual({ data: {} });
        expect(server.requests).toHaveLength(3);
    });

    test("gives up after maxRetries on 5xx with Vault's errors", async () => {
        server.setHandler(() => ({ status: 502, json: { errors: ["upstream down"] } }));
        const err = await client({ maxRetries: 2 }).read("secret/x").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VaultHttpError);
        expect((err as VaultHttpError).message).toBe("Vault GET secret/x: 502: upstream down");
        expect(server.requests).toHaveLength(3);
    });

    test("gives up after maxRetries on repeated resets", async () => {
        server.setHandler(() => ({ destroy: true }));
        const err = await client({ maxRetries: 2 }).read("secret/x").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VaultNetworkError);
        expect((err as VaultNetworkError).attempts).toBe(3);
        expect((err as Error).message).toMatch(/^Vault GET secret\/x: no answer after 3 attempts: ECONNRESET: /);
        expect(server.requests).toHaveLength(3);
    });

    test("does not retry 4xx (other than 429) or 501", async () => {
        server.setHandler(routes({ "POST pki_int/revoke": { status: 400, json: { errors: ["serial number is invalid"] } }, "GET sys/init-only": { status: 501, json: { errors: [] } } }));
        const err = (await client().write("pki_int/revoke", { serial_number: "zz" }).catch((e: unknown) => e)) as VaultHttpError;
        expect(err).toBeInstanceOf(VaultHttpError);
        expect(err.message).toBe("Vault POST pki_int/revoke: 400: serial number is invalid");
        expect([err.status, err.method, err.path, err.errors]).toEqual([400, "POST", "pki_int/revoke", ["serial number is invalid"]]);
        await expect(client().read("sys/init-only")).rejects.toThrow("Vault GET sys/init-only: 501: (no error message in the answer)");
        expect(server.requests).toHaveLength(2);
    });

    test("retries a refused connection, then reports it", async () => {
        const port = await unusedLoopbackPort();
        const started = Date.now();
        const err = await createVaultClient({ address: `https://127.0.0.1:${port}`, caCertFile: listener.caFile, token: TOKEN, maxRetries: 2, retryBaseMs: 20 })
            .read("sys/health")
            .catch((e: unknown) => e);
        expect((err as VaultNetworkError).code).toBe("ECONNREFUSED");
        expect((err as VaultNetworkError).attempts).toBe(3);
        // Backoff 20 ms then 40 ms.
        expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    });

    test("times out a server that never answers", async () => {
        server.setHandler(() => ({ hang: true }));
        const err = await client({ timeoutMs: 100, maxRetries: 1 }).read("secret/x").catch((e: unknown) => e);
        expect((err as VaultNetworkError).code).toBe("ETIMEDOUT");
        expect(server.requests).toHaveLength(2);
    });
});

describe("safety", () => {
    test("the token never appears in an error, even when Vault echoes it", async () => {
        server.setHandler(() => ({ status: 403, json: { errors: [`permission denied for token ${TOKEN}`] } }));
        const err = (await client().write("sys/policy/x", { policy: "secret-ish" }).catch((e: unknown) => e)) as Error;
        expect(err.message).toBe("Vault POST sys/policy/x: 403: permission denied for token [redacted]");
        expect(err.message).not.toContain(TOKEN);
        expect(JSON.stringify(err)).not.toContain(TOKEN);
        expect(err.message).not.toContain("secret-ish");
    });

    test("verifies the listener against the given CA only", async () => {
        const otherCa = pki.rootCa("Some Other CA");
        server.setHandler(routes({ "GET sys/health": { json: {} } }));
        const err = await createVaultClient({ address: server.address, caCertPem: otherCa.certPem, token: TOKEN, retryBaseMs: 1 })
            .read("sys/health")
            .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VaultNetworkError);
        // A TLS failure is not retried and no request reached the server.
        expect((err as VaultNetworkError).attempts).toBe(1);
        expect(server.requests).toHaveLength(0);
    });

    test("refuses a plain-http address and an unreadable CA file", () => {
        expect(() => createVaultClient({ address: "http://127.0.0.1:8200" })).toThrow("Vault address must be https://");
        expect(() => createVaultClient({ address: server.address, caCertFile: "/nonexistent/ca.pem" })).toThrow("cannot read the Vault CA bundle /nonexistent/ca.pem: ENOENT");
    });
});
