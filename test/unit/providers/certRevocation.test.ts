import { certRevocationProvider as provider, type CertRevocationInputs } from "../../../providers/certRevocation";
import { UNKNOWN_INPUT, VaultHttpError } from "../../../providers/vaultClient";
import { routes, startFakeVault, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki } from "../../support/tls";

const TOKEN = "hvs.cert-revocation-test-token";
let pki: TestPki;
let server: TestHttpsServer;
let inputs: CertRevocationInputs;
const savedToken = process.env.VAULT_TOKEN;

beforeAll(async () => {
    process.env.VAULT_TOKEN = TOKEN;
    pki = TestPki.create();
    const vault = await startFakeVault(pki);
    server = vault.server;
    inputs = { connection: vault.connection, pkiMount: "pki_int", serialNumber: "3a:1f:09:7c" };
});

afterAll(async () => {
    process.env.VAULT_TOKEN = savedToken;
    await server.close();
    pki.cleanup();
});

beforeEach(() => {
    server.requests.length = 0;
});

describe("check", () => {
    test("accepts good inputs and stores the serial in Vault's colon form", async () => {
        const res = await provider.check!({} as CertRevocationInputs, { ...inputs, serialNumber: "3A1F097C" });
        expect(res.failures).toEqual([]);
        expect(res.inputs?.serialNumber).toBe("3a:1f:09:7c");
    });

    test("rejects a bad mount, serial and address, naming each property", async () => {
        const res = await provider.check!({} as CertRevocationInputs, {
            connection: { address: "http://vault:8200" },
            pkiMount: "/pki_int",
            serialNumber: "not-hex",
        });
        expect(res.failures?.map((f) => f.property)).toEqual(["connection.address", "pkiMount", "serialNumber"]);
    });

    test("skips inputs that are unknown during preview", async () => {
        const res = await provider.check!({} as CertRevocationInputs, { ...inputs, serialNumber: UNKNOWN_INPUT });
        expect(res.failures).toEqual([]);
        expect(res.inputs?.serialNumber).toBe(UNKNOWN_INPUT);
    });
});

describe("diff", () => {
    test.each([
        ["pkiMount", { pkiMount: "pki_other" }, ["pkiMount"]],
        ["serialNumber", { serialNumber: "aa:bb" }, ["serialNumber"]],
    ] as const)("replaces when %s changes", async (_name, change, replaces) => {
        const res = await provider.diff!("id", inputs, { ...inputs, ...change });
        expect(res).toEqual({ changes: true, replaces, deleteBeforeReplace: false });
    });

    test("a connection change is an update in place; no change is no change", async () => {
        const moved = await provider.diff!("id", inputs, { ...inputs, connection: { ...inputs.connection, address: "https://vault2:8200" } });
        expect(moved.changes).toBe(true);
        expect(moved.replaces).toEqual([]);
        const same = await provider.diff!("id", inputs, { ...inputs, connection: { ...inputs.connection } });
        expect(same.changes).toBe(false);
    });
});

test("create only records: id is <mount>:<serial> and Vault is not called", async () => {
    const res = await provider.create(inputs);
    expect(res.id).toBe("pki_int:3a:1f:09:7c");
    expect(res.outs).toEqual(inputs);
    expect(server.requests).toHaveLength(0);
});

describe("delete", () => {
    test("revokes the recorded serial with the token from VAULT_TOKEN", async () => {
        server.setHandler(routes({ "POST pki_int/revoke": { json: { data: { revocation_time: 1764280000, state: "revoked" } } } }));
        await provider.delete!("pki_int:3a:1f:09:7c", inputs);
        expect(server.requests).toHaveLength(1);
        expect(server.requests[0].method).toBe("POST");
        expect(server.requests[0].body).toEqual({ serial_number: "3a:1f:09:7c" });
        expect(server.requests[0].headers["x-vault-token"]).toBe(TOKEN);
    });

    test("succeeds when Vault says the cert already expired (200 with a warning)", async () => {
        server.setHandler(
            routes({ "POST pki_int/revoke": { json: { data: null, warnings: ["certificate with serial 3a:1f:09:7c already expired; refusing to add to CRL"] } } }),
        );
        await expect(provider.delete!("id", inputs)).resolves.toBeUndefined();
    });

    test.each([
        "certificate with serial 3a:1f:09:7c already expired; refusing to add to CRL",
        "certificate with serial 3a:1f:09:7c has already been revoked",
        "certificate with serial 3a:1f:09:7c not found",
    ])("succeeds when Vault refuses with 400 %j", async (message) => {
        server.setHandler(routes({ "POST pki_int/revoke": { status: 400, json: { errors: [message] } } }));
        await expect(provider.delete!("id", inputs)).resolves.toBeUndefined();
    });

    test("fails on any other refusal, naming the path and never the token", async () => {
        server.setHandler(routes({ "POST pki_int/revoke": { status: 403, json: { errors: ["1 error occurred:\n\t* permission denied\n\n"] } } }));
        const err = (await provider.delete!("id", inputs).catch((e: unknown) => e)) as VaultHttpError;
        expect(err).toBeInstanceOf(VaultHttpError);
        expect(err.message).toMatch(/^Vault POST pki_int\/revoke: 403: 1 error occurred:\n\t\* permission denied/);
        expect(err.message).not.toContain(TOKEN);
    });
});
