import type { VaultConnection } from "../../../providers/connection";
import { measureVersions } from "../../../providers/rotationCheck";
import { compareVersions, parseVaultVersion, versionDrift, type VaultVersion } from "../../../providers/versionDrift";
import { routes, startFakeVault, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki } from "../../support/tls";

let pki: TestPki;
let server: TestHttpsServer;
let connection: VaultConnection;
const AGENT_TEXT = "Vault v1.21.1 (2453aac2638a6ae243341b4e0657fd8aea1cbbc1), built 2025-11-18T13:04:32Z";
const savedToken = process.env.VAULT_TOKEN;

beforeAll(async () => {
    pki = TestPki.create();
    const vault = await startFakeVault(pki);
    server = vault.server;
    connection = vault.connection;
});

afterAll(async () => {
    process.env.VAULT_TOKEN = savedToken;
    await server.close();
    pki.cleanup();
});

beforeEach(() => {
    server.requests.length = 0;
    // sys/health needs no token: prove the provider does not need one either.
    delete process.env.VAULT_TOKEN;
});

const v = (text: string): VaultVersion => {
    const parsed = parseVaultVersion(text);
    if (!parsed) throw new Error(`test fixture ${text} does not parse`);
    return parsed;
};

describe("parseVaultVersion", () => {
    test.each([
        ["Vault v1.21.1 (2453aac), built 2025-11-18T13:04:32Z", { major: 1, minor: 21, patch: 1, prerelease: "", metadata: "", text: "1.21.1" }],
        ["1.15.2+ent", { major: 1, minor: 15, patch: 2, prerelease: "", metadata: "ent", text: "1.15.2+ent" }],
        ["1.16.3+prem", { major: 1, minor: 16, patch: 3, prerelease: "", metadata: "prem", text: "1.16.3+prem" }],
        ["Vault v1.17.0+ent.hsm (abc)", { major: 1, minor: 17, patch: 0, prerelease: "", metadata: "ent.hsm", text: "1.17.0+ent.hsm" }],
        ["v1.18.0-rc1", { major: 1, minor: 18, patch: 0, prerelease: "rc1", metadata: "", text: "1.18.0-rc1" }],
    ])("%j", (text, expected) => {
        expect(parseVaultVersion(text)).toEqual(expected);
    });

    test.each(["", "Vault", "redacted", undefined])("no version in %j", (text) => {
        expect(parseVaultVersion(text)).toBeUndefined();
    });
});

describe("compareVersions", () => {
    test("orders by major, minor, patch and ignores build metadata", () => {
        expect(compareVersions(v("1.21.1"), v("1.21.1+ent"))).toBe(0);
        expect(compareVersions(v("1.21.1"), v("1.21.2"))).toBe(-1);
        expect(compareVersions(v("1.22.0"), v("1.21.9"))).toBe(1);
        expect(compareVersions(v("1.9.0"), v("1.10.0"))).toBe(-1);
        expect(compareVersions(v("2.0.0"), v("1.99.0"))).toBe(1);
    });

    test("a release sorts after its prereleases", () => {
        expect(compareVersions(v("1.18.0-rc1"), v("1.18.0"))).toBe(-1);
        expect(compareVersions(v("1.18.0-rc2"), v("1.18.0-rc10"))).toBe(-1);
    });
});

describe("versionDrift", () => {
    test("equal versions (an edition suffix aside) -> no warning", () => {
        expect(versionDrift("app-a", v("1.21.1+ent"), v("1.21.1"))).toEqual({ mismatch: false, agentAhead: false, warning: "" });
    });

    test("agent behind -> a warning naming both versions and what to re-test", () => {
        const res = versionDrift("app-a", v("1.21.1+ent"), v("1.20.4"));
        expect(res.mismatch).toBe(true);
        expect(res.agentAhead).toBe(false);
        expect(res.warning).toBe("app-a: Vault Agent 1.20.4 differs from the Vault server 1.21.1+ent; re-test cert auth login, token renewal and template rendering after Vault upgrades");
    });

    test("agent a minor or more ahead -> said specially", () => {
        const res = versionDrift("app-a", v("1.21.3"), v("1.22.0"));
        expect(res).toMatchObject({ mismatch: true, agentAhead: true });
        expect(res.warning).toContain("Vault Agent 1.22.0 is a minor version or more AHEAD of the Vault server 1.21.3");
        expect(res.warning).toContain("re-test cert auth login, token renewal and template rendering");
        expect(versionDrift("app-a", v("1.21.9"), v("2.0.0")).agentAhead).toBe(true);
    });

    test("agent a patch ahead is a mismatch but not 'ahead'", () => {
        expect(versionDrift("app-a", v("1.21.1"), v("1.21.2"))).toMatchObject({ mismatch: true, agentAhead: false });
    });

    test("unknown server version -> a warning that says so; unknown agent -> nothing", () => {
        const res = versionDrift("app-a", undefined, v("1.21.1"));
        expect(res.mismatch).toBe(false);
        expect(res.warning).toMatch(/^app-a: the Vault server version is unknown \(sys\/health gave none; it may be redacted\), Vault Agent is 1\.21\.1; re-test/);
        expect(versionDrift("app-a", v("1.21.1"), undefined)).toEqual({ mismatch: false, agentAhead: false, warning: "" });
    });
});

// The measurement RotationCheck makes (it took over the former VersionDrift resource).
describe("measureVersions", () => {
    const measure = () => measureVersions(connection, "app-a", AGENT_TEXT);

    test("reads sys/health?standbyok=true without a token", async () => {
        server.setHandler(routes({ "GET sys/health": { json: { initialized: true, sealed: false, standby: false, version: "1.20.4+ent" } } }));
        expect(await measure()).toEqual({
            serverVersion: "1.20.4+ent",
            agentVersion: "1.21.1",
            versionMismatch: true,
            agentAhead: true,
            versionWarning: expect.stringContaining("AHEAD") as string,
        });
        expect(server.requests[0].query).toEqual({ standbyok: "true" });
        expect(server.requests[0].headers["x-vault-token"]).toBeUndefined();
    });

    test.each([429, 472, 473])("a %i answer (standby / secondary) is read, not retried", async (status) => {
        server.setHandler(routes({ "GET sys/health": { status, json: { standby: true, version: "1.21.1" } } }));
        expect(await measure()).toMatchObject({ serverVersion: "1.21.1", versionMismatch: false, versionWarning: "" });
        expect(server.requests).toHaveLength(1);
    });

    test("a redacted server version is a warning, not a failure", async () => {
        server.setHandler(routes({ "GET sys/health": { json: { initialized: true, version: "" } } }));
        const res = await measure();
        expect(res).toMatchObject({ serverVersion: "", agentVersion: "1.21.1", versionMismatch: false, agentAhead: false });
        expect(res.versionWarning).toContain("unknown");
    });
});
