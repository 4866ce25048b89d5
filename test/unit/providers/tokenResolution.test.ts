// How providers get Vault access at call time: one identity per run (VAULT_TOKEN,
// else ~/.vault-token, the vault plugin's own order; nothing else, not even a
// Deployment's OIDC token), and the listener CA from VAULT_CACERT when the stack
// names no CA file (what an ESC environment's `files` export provides).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { clientForConnection, tokenForConnection } from "../../../providers/vaultClient";
import { routes, startFakeVault, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki } from "../../support/tls";

let pki: TestPki;
let server: TestHttpsServer;
let connection: { address: string; caCertFile: string };
const saved = { token: process.env.VAULT_TOKEN, oidc: process.env.PULUMI_OIDC_TOKEN, cacert: process.env.VAULT_CACERT, home: process.env.HOME };
const emptyHome = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-home-"));

beforeAll(async () => {
    pki = TestPki.create();
    const vault = await startFakeVault(pki, {
        handler: routes({
            "GET sys/mounts": (req) => ({ json: { seen: req.headers["x-vault-token"] ?? null } }),
            "POST auth/jwt/login": () => ({ json: { auth: { client_token: "hvs.from-jwt" } } }),
        }),
    });
    server = vault.server;
    connection = vault.connection;
});

afterAll(async () => {
    for (const [k, v] of [["VAULT_TOKEN", saved.token], ["PULUMI_OIDC_TOKEN", saved.oidc], ["VAULT_CACERT", saved.cacert], ["HOME", saved.home]] as const) {
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
    delete process.env.VAULT_CACERT;
    process.env.HOME = emptyHome;
    server.requests.length = 0;
});

it("prefers VAULT_TOKEN over ~/.vault-token", async () => {
    process.env.VAULT_TOKEN = "hvs.env";
    fs.writeFileSync(path.join(emptyHome, ".vault-token"), "hvs.file\n", { mode: 0o600 });
    try {
        expect(await tokenForConnection()).toBe("hvs.env");
    } finally {
        fs.rmSync(path.join(emptyHome, ".vault-token"));
    }
});

it("reads ~/.vault-token when VAULT_TOKEN is unset", async () => {
    fs.writeFileSync(path.join(emptyHome, ".vault-token"), "hvs.file\n", { mode: 0o600 });
    try {
        expect(await tokenForConnection()).toBe("hvs.file");
    } finally {
        fs.rmSync(path.join(emptyHome, ".vault-token"));
    }
});

it("never logs in on its own: a Deployment's OIDC token is not a second identity", async () => {
    process.env.PULUMI_OIDC_TOKEN = "eyJhbGciOi.eyJzdWIiOi.sig";
    await expect(tokenForConnection()).rejects.toThrow(/no Vault token: set VAULT_TOKEN .*ESC environment \(deploy\/README\.md\)/);
    expect(server.requests).toEqual([]);
});

it("sends the resolved token, and trusts the listener CA named by VAULT_CACERT when the connection names none", async () => {
    process.env.VAULT_TOKEN = "hvs.env";
    const { caCertFile, ...withoutCa } = connection;
    // No CA at all: the fake Vault's listener is not trusted.
    await expect(clientForConnection(withoutCa).request("GET", "sys/mounts")).rejects.toThrow(/certificate|self.signed|issuer/i);
    process.env.VAULT_CACERT = caCertFile;
    const answer = await clientForConnection(withoutCa).request("GET", "sys/mounts");
    expect(answer.body).toEqual({ seen: "hvs.env" });
    // A CA file the stack names wins over VAULT_CACERT.
    process.env.VAULT_CACERT = path.join(emptyHome, "no-such-ca.pem");
    expect((await clientForConnection(connection).request("GET", "sys/mounts")).body).toEqual({ seen: "hvs.env" });
    expect(() => clientForConnection(withoutCa)).toThrow(/cannot read the Vault CA bundle .*no-such-ca\.pem/);
    // A connection recorded before the move to ESC names a runner file a Deployment lacks: VAULT_CACERT then.
    process.env.VAULT_CACERT = caCertFile;
    const recorded = { ...withoutCa, caCertFile: path.join(emptyHome, "gone", "ca.pem") };
    expect((await clientForConnection(recorded).request("GET", "sys/mounts")).body).toEqual({ seen: "hvs.env" });
    delete process.env.VAULT_CACERT;
    expect(() => clientForConnection(recorded)).toThrow(/cannot read the Vault CA bundle .*gone\/ca\.pem/);
});
