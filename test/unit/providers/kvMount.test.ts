import { kvMountProvider as provider, kvVersionOf, type KvMountInputs, type KvMountOutputs } from "../../../providers/kvMount";
import { routes, startFakeVault, type Reply, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki } from "../../support/tls";

const TOKEN = "hvs.kv-mount-test-token";
let pki: TestPki;
let server: TestHttpsServer;
let inputs: KvMountInputs;
const savedToken = process.env.VAULT_TOKEN;

beforeAll(async () => {
    process.env.VAULT_TOKEN = TOKEN;
    pki = TestPki.create();
    const vault = await startFakeVault(pki);
    server = vault.server;
    inputs = { connection: vault.connection, mount: "secret" };
});

afterAll(async () => {
    process.env.VAULT_TOKEN = savedToken;
    await server.close();
    pki.cleanup();
});

beforeEach(() => {
    server.requests.length = 0;
});

const mountAnswer = (type: string, options: Record<string, string> | null): Reply => ({
    // Current Vault repeats the description under `data`.
    json: { type, options, accessor: "kv_123", data: { type, options, accessor: "kv_123" } },
});

describe("version detection", () => {
    test.each([
        ["kv with options.version 2", mountAnswer("kv", { version: "2" }), "2"],
        ["kv with options.version 1", mountAnswer("kv", { version: "1" }), "1"],
        ["kv without options", mountAnswer("kv", null), "1"],
        ["the kv-v2 alias", mountAnswer("kv-v2", null), "2"],
        ["an older answer without `data`", { json: { type: "kv", options: { version: "2" } } } as Reply, "2"],
    ])("%s", async (_name, answer, version) => {
        server.setHandler(routes({ "GET sys/mounts/secret": answer }));
        const res = await provider.create(inputs);
        expect(res).toEqual({ id: "secret", outs: { ...inputs, type: "kv", version } });
        expect(server.requests[0].headers["x-vault-token"]).toBe(TOKEN);
    });

    test("a missing mount fails with a clear message", async () => {
        server.setHandler(routes({ "GET sys/mounts/secret": { status: 400, json: { errors: ["No secret engine mount at secret/"] } } }));
        await expect(provider.create(inputs)).rejects.toThrow(/^KV mount "secret" does not exist$/);
    });

    test("a non-KV mount fails naming its type", async () => {
        server.setHandler(routes({ "GET sys/mounts/secret": mountAnswer("pki", null) }));
        await expect(provider.create(inputs)).rejects.toThrow('mount "secret" is not a KV mount: its type is "pki"');
    });

    test("falls back to sys/internal/ui/mounts on 403", async () => {
        server.setHandler(
            routes({
                "GET sys/mounts/secret": { status: 403, json: { errors: ["1 error occurred:\n\t* permission denied\n\n"] } },
                "GET sys/internal/ui/mounts/secret": { json: { data: { type: "kv", options: { version: "2" }, path: "secret/" } } },
            }),
        );
        const res = await provider.create(inputs);
        expect(res.outs?.version).toBe("2");
        expect(server.requests.map((r) => r.path)).toEqual(["sys/mounts/secret", "sys/internal/ui/mounts/secret"]);
    });

    test("403 on both paths says the mount is missing or invisible to the token", async () => {
        server.setHandler(() => ({ status: 403, json: { errors: ["permission denied"] } }));
        await expect(provider.create(inputs)).rejects.toThrow('KV mount "secret" does not exist or this token may not see it');
    });

    test("kvVersionOf rejects an unknown KV version", () => {
        expect(() => kvVersionOf("secret", { type: "kv", options: { version: "3" } })).toThrow('options.version "3"');
    });
});

test("read re-detects, so a v1 -> v2 upgrade shows up on refresh", async () => {
    const stored: KvMountOutputs = { ...inputs, type: "kv", version: "1" };
    server.setHandler(routes({ "GET sys/mounts/secret": mountAnswer("kv", { version: "2" }) }));
    const res = await provider.read!("secret", stored);
    expect(res).toEqual({ id: "secret", props: { ...stored, version: "2" } });
});

describe("check and diff", () => {
    test("check rejects a bad mount and a bad address, and trims slashes", async () => {
        const bad = await provider.check!({} as KvMountInputs, { connection: { address: "vault:8200" }, mount: "sec ret" });
        expect(bad.failures?.map((f) => f.property)).toEqual(["connection.address", "mount"]);
        const trimmed = await provider.check!({} as KvMountInputs, { ...inputs, mount: "secret/" });
        expect(trimmed.failures).toEqual([]);
        expect(trimmed.inputs?.mount).toBe("secret");
    });

    test("replaces exactly when the mount changes", async () => {
        const stored: KvMountOutputs = { ...inputs, type: "kv", version: "2" };
        await expect(provider.diff!("secret", stored, { ...inputs, mount: "kv" })).resolves.toEqual({ changes: true, replaces: ["mount"] });
        await expect(provider.diff!("secret", stored, { ...inputs, connection: { address: "https://other:8200" } })).resolves.toEqual({ changes: true, replaces: [] });
        await expect(provider.diff!("secret", stored, { ...inputs })).resolves.toEqual({ changes: false, replaces: [] });
    });
});
