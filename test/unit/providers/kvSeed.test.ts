import { kvSeedProvider as provider, type KvSeedInputs, type KvSeedOutputs } from "../../../providers/kvSeed";
import { UNKNOWN_INPUT } from "../../../providers/vaultClient";
import { routes, startFakeVault, type RecordedRequest, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki } from "../../support/tls";

const TOKEN = "hvs.kv-seed-test-token";
const SECRET_VALUE = "s3cr3t-seed-value";
let pki: TestPki;
let server: TestHttpsServer;
let v2: KvSeedInputs;
let v1: KvSeedInputs;
const everyRequest: RecordedRequest[] = [];
const savedToken = process.env.VAULT_TOKEN;

beforeAll(async () => {
    process.env.VAULT_TOKEN = TOKEN;
    pki = TestPki.create();
    const vault = await startFakeVault(pki);
    server = vault.server;
    v2 = { connection: vault.connection, mount: "secret", version: "2", path: "apps/app-a", seed: true, data: { password: SECRET_VALUE } };
    v1 = { ...v2, mount: "kv1", version: "1" };
});

afterEach(() => {
    everyRequest.push(...server.requests);
    server.requests.length = 0;
});

afterAll(async () => {
    process.env.VAULT_TOKEN = savedToken;
    await server.close();
    pki.cleanup();
});

const metadata = (versions: Record<string, { deletion_time: string; destroyed: boolean }>) => ({
    json: { data: { current_version: Object.keys(versions).length, versions } },
});

describe("KV v2", () => {
    test("existing metadata -> existed, nothing written", async () => {
        server.setHandler(routes({ "GET secret/metadata/apps/app-a": metadata({ "1": { deletion_time: "", destroyed: false } }) }));
        const res = await provider.create(v2);
        expect(res.outs?.status).toBe("existed");
        expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET secret/metadata/apps/app-a"]);
    });

    test("soft-deleted or destroyed versions still count as existing", async () => {
        server.setHandler(
            routes({
                "GET secret/metadata/apps/app-a": metadata({
                    "1": { deletion_time: "", destroyed: true },
                    "2": { deletion_time: "2026-11-01T00:00:00Z", destroyed: false },
                }),
            }),
        );
        expect((await provider.create(v2)).outs?.status).toBe("existed");
        expect(server.requests.filter((r) => r.method !== "GET")).toEqual([]);
    });

    test("absent and seed -> written once with cas=0 -> seeded", async () => {
        server.setHandler(routes({ "POST secret/data/apps/app-a": { json: { data: { version: 1 } } } }));
        const res = await provider.create(v2);
        expect(res).toEqual({ id: "secret/apps/app-a", outs: { ...v2, status: "seeded" } });
        const writes = server.requests.filter((r) => r.method === "POST");
        expect(writes).toHaveLength(1);
        expect(writes[0].body).toEqual({ options: { cas: 0 }, data: { password: SECRET_VALUE } });
        expect(writes[0].headers["x-vault-token"]).toBe(TOKEN);
    });

    test("absent and not seeding -> missing, nothing written", async () => {
        server.setHandler(routes({}));
        const res = await provider.create({ ...v2, seed: false, data: undefined });
        expect(res.outs?.status).toBe("missing");
        expect(server.requests.map((r) => r.method)).toEqual(["GET"]);
    });

    test("a check-and-set conflict (someone wrote first) -> existed, no second write", async () => {
        server.setHandler(
            routes({ "POST secret/data/apps/app-a": { status: 400, json: { errors: ["check-and-set parameter did not match the current version"] } } }),
        );
        const res = await provider.create(v2);
        expect(res.outs?.status).toBe("existed");
        expect(server.requests.filter((r) => r.method === "POST")).toHaveLength(1);
    });

    test("other write errors fail without the seed data in the message", async () => {
        server.setHandler(routes({ "POST secret/data/apps/app-a": { status: 403, json: { errors: ["permission denied"] } } }));
        const err = (await provider.create(v2).catch((e: unknown) => e)) as Error;
        expect(err.message).toBe("Vault POST secret/data/apps/app-a: 403: permission denied");
        expect(err.message).not.toContain(SECRET_VALUE);
    });
});

describe("KV v1", () => {
    test("absent and seed -> re-read just before writing, then written -> seeded", async () => {
        server.setHandler(routes({ "POST kv1/apps/app-a": { status: 204 } }));
        const res = await provider.create(v1);
        expect(res.outs?.status).toBe("seeded");
        expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET kv1/apps/app-a", "GET kv1/apps/app-a", "POST kv1/apps/app-a"]);
        expect(server.requests[2].body).toEqual({ password: SECRET_VALUE });
    });

    test("present -> existed", async () => {
        server.setHandler(routes({ "GET kv1/apps/app-a": { json: { data: { password: "theirs" } } } }));
        expect((await provider.create(v1)).outs?.status).toBe("existed");
        expect(server.requests.filter((r) => r.method === "POST")).toEqual([]);
    });

    test("appearing between the check and the write -> existed, not overwritten", async () => {
        server.setHandler(routes({ "GET kv1/apps/app-a": (_req, i) => (i === 0 ? { status: 404, json: { errors: [] } } : { json: { data: { password: "theirs" } } }) }));
        expect((await provider.create(v1)).outs?.status).toBe("existed");
        expect(server.requests.filter((r) => r.method === "POST")).toEqual([]);
    });
});

test("update re-runs the same logic: turning seeding on writes an absent path", async () => {
    server.setHandler(routes({ "POST secret/data/apps/app-a": { json: {} } }));
    const stored: KvSeedOutputs = { ...v2, seed: false, data: undefined, status: "missing" };
    const res = await provider.update!("secret/apps/app-a", stored, v2);
    expect(res.outs?.status).toBe("seeded");
});

describe("read refreshes the status", () => {
    test.each([
        ["seeded", true, "seeded"],
        ["existed", true, "existed"],
        ["missing", true, "existed"],
        ["seeded", false, "missing"],
    ] as const)("stored %s, path exists=%s -> %s", async (stored, exists, expected) => {
        server.setHandler(routes(exists ? { "GET secret/metadata/apps/app-a": metadata({ "1": { deletion_time: "", destroyed: false } }) } : {}));
        const res = await provider.read!("secret/apps/app-a", { ...v2, status: stored });
        expect(res.props?.status).toBe(expected);
        expect(server.requests.map((r) => r.method)).toEqual(["GET"]);
    });
});

test("delete is a no-op: nothing is sent to Vault", async () => {
    await provider.delete!("secret/apps/app-a", { ...v2, status: "seeded" });
    expect(server.requests).toEqual([]);
});

describe("check", () => {
    test("seed without data fails on `data`", async () => {
        const res = await provider.check!({} as KvSeedInputs, { ...v2, data: undefined });
        expect(res.failures).toEqual([{ property: "data", reason: expect.stringContaining("seed is true but there is no seed data") as string }]);
        const empty = await provider.check!({} as KvSeedInputs, { ...v2, data: {} });
        expect(empty.failures?.map((f) => f.property)).toEqual(["data"]);
    });

    test("names each bad property and never quotes the data", async () => {
        const res = await provider.check!({} as KvSeedInputs, {
            ...v2,
            mount: "/secret",
            version: "3" as "2",
            path: "apps/../app-b",
            data: { password: SECRET_VALUE, count: 3 as unknown as string },
        });
        expect(res.failures?.map((f) => f.property)).toEqual(["mount", "version", "path", "data"]);
        expect(JSON.stringify(res.failures)).not.toContain(SECRET_VALUE);
        expect(res.failures?.[3].reason).toContain("count");
    });

    test("good inputs and unknown (preview) values pass", async () => {
        await expect(provider.check!({} as KvSeedInputs, v2)).resolves.toEqual({ inputs: v2, failures: [] });
        const preview = await provider.check!({} as KvSeedInputs, { ...v2, data: UNKNOWN_INPUT as unknown as Record<string, string> });
        expect(preview.failures).toEqual([]);
    });
});

describe("diff", () => {
    const stored = (): KvSeedOutputs => ({ ...v2, status: "seeded" });

    test.each([
        ["mount", { mount: "kv" }],
        ["path", { path: "apps/app-z" }],
        ["version", { version: "1" }],
    ] as const)("replaces when %s changes", async (key, change) => {
        await expect(provider.diff!("id", stored(), { ...v2, ...change })).resolves.toEqual({ changes: true, replaces: [key] });
    });

    test("seed and data changes are updates; no change is no change", async () => {
        await expect(provider.diff!("id", stored(), { ...v2, seed: false })).resolves.toEqual({ changes: true, replaces: [] });
        await expect(provider.diff!("id", stored(), { ...v2, data: { password: "other" } })).resolves.toEqual({ changes: true, replaces: [] });
        await expect(provider.diff!("id", stored(), { ...v2, data: { password: SECRET_VALUE } })).resolves.toEqual({ changes: false, replaces: [] });
    });
});

// Declared last, so it runs after every other test in this file.
test("no test above made the provider send a DELETE", () => {
    expect(everyRequest.length).toBeGreaterThan(10);
    expect(everyRequest.filter((r) => r.method === "DELETE")).toEqual([]);
});
