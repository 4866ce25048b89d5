// How providers get a Vault token at call time: VAULT_TOKEN, ~/.vault-token, or
// (unattended Deployments) a JWT login with the Deployment's OIDC token.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { tokenForConnection } from "../../../providers/vaultClient";
import { routes, startFakeVault, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki } from "../../support/tls";

let pki: TestPki;
let server: TestHttpsServer;
let connection: { address: string; caCertFile: string };
const saved = { token: process.env.VAULT_TOKEN, oidc: process.env.PULUMI_OIDC_TOKEN, file: process.env.VAULT_ROTATION_OIDC_TOKEN_FILE, home: process.env.HOME };
const emptyHome = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-home-"));

beforeAll(async () => {
    pki = TestPki.create();
    const vault = await startFakeVault(pki, {
        handler: routes({
            "POST auth/jwt-deploy/login": (req) =>
                (req.body as { jwt?: string }).jwt === "oidc-jwt-from-pulumi" ? { json: { auth: { client_token: "hvs.from-jwt" } } } : { status: 400, json: { errors: ["invalid jwt"] } },
        }),
    });
    server = vault.server;
    connection = vault.connection;
});

afterAll(async () => {
    for (const [k, v] of [["VAULT_TOKEN", saved.token], ["PULUMI_OIDC_TOKEN", saved.oidc], ["VAULT_ROTATION_OIDC_TOKEN_FILE", saved.file], ["HOME", saved.home]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
    await server.close();
    pki.cleanup();
    fs.rmSync(emptyHome, { recursive: true, force: true });
});

beforeEach(() => {
    delete process.env.VAULT_TOKEN;
    delete process.env.PULUMI_OIDC_TOKEN;
    process.env.VAULT_ROTATION_OIDC_TOKEN_FILE = path.join(emptyHome, "no-oidc-token");
    process.env.HOME = emptyHome;
    server.requests.length = 0;
});

it("prefers VAULT_TOKEN and makes no login", async () => {
    process.env.VAULT_TOKEN = "hvs.env";
    process.env.PULUMI_OIDC_TOKEN = "oidc-jwt-from-pulumi";
    expect(await tokenForConnection({ ...connection, jwtAuth: { mount: "jwt-deploy", role: "rotation" } })).toBe("hvs.env");
    expect(server.requests).toEqual([]);
});

it("reads ~/.vault-token when VAULT_TOKEN is unset", async () => {
    fs.writeFileSync(path.join(emptyHome, ".vault-token"), "hvs.file\n", { mode: 0o600 });
    try {
        expect(await tokenForConnection(connection)).toBe("hvs.file");
    } finally {
        fs.rmSync(path.join(emptyHome, ".vault-token"));
    }
});

it("logs in with the Deployment's OIDC token through the configured JWT role", async () => {
    process.env.PULUMI_OIDC_TOKEN = "oidc-jwt-from-pulumi";
    expect(await tokenForConnection({ ...connection, jwtAuth: { mount: "jwt-deploy", role: "rotation" } })).toBe("hvs.from-jwt");
    expect(server.requests.map((r) => [r.method, r.path, r.body, r.headers["x-vault-token"]])).toEqual([
        ["POST", "auth/jwt-deploy/login", { role: "rotation", jwt: "oidc-jwt-from-pulumi" }, undefined],
    ]);
});

it("reads the OIDC token from its file when the variable is unset", async () => {
    const file = path.join(emptyHome, "pulumi.oidc");
    fs.writeFileSync(file, "oidc-jwt-from-pulumi\n");
    process.env.VAULT_ROTATION_OIDC_TOKEN_FILE = file;
    expect(await tokenForConnection({ ...connection, jwtAuth: { mount: "jwt-deploy", role: "rotation" } })).toBe("hvs.from-jwt");
});

it("says what is missing when there is no token at all", async () => {
    await expect(tokenForConnection(connection)).rejects.toThrow(/no Vault token: set VAULT_TOKEN .* or configure vault\.jwtAuth/);
    await expect(tokenForConnection({ ...connection, jwtAuth: { mount: "jwt-deploy", role: "rotation" } })).rejects.toThrow(
        /no OIDC token was found for the JWT login at auth\/jwt-deploy/,
    );
});

it("fails a refused JWT login without echoing the JWT", async () => {
    process.env.PULUMI_OIDC_TOKEN = "a-wrong-jwt";
    const error = await tokenForConnection({ ...connection, jwtAuth: { mount: "jwt-deploy", role: "rotation" } }).catch((e: Error) => e);
    expect(String(error)).toMatch(/auth\/jwt-deploy\/login: 400: invalid jwt/);
    expect(String(error)).not.toContain("a-wrong-jwt");
});
