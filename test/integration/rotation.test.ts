// The whole program against a real Vault and real Vault Agents: first apply,
// rotation with a new epoch, and a no-op re-run.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { checkNoKeyMaterialInCommandOutput } from "../../policy/rules";
import { applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { loadStackConfig, REPO_ROOT, withEpoch } from "../support/harness";
import { privateKeyNeedles } from "../support/keyNeedles";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
let sandbox: Sandbox;
let first: ApplyResult;
let rotated: ApplyResult;
let again: ApplyResult;
/** The agent credentials on the hosts before the rotation. */
const oldAgent: Record<string, { cert: string; key: string }> = {};

async function apply(config: Record<string, string>, state?: ApplierState): Promise<ApplyResult> {
    return applyProgram({ config, state, vault, stack: "local", log: () => undefined });
}

beforeAll(async () => {
    // Other files apply stacks with the same app names to this shared Vault: start from an absent
    // apps/app-a, so that the first run's seed-if-absent is what this file sees.
    await vaultRequest(vault, "DELETE", "secret/metadata/apps/app-a");
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-it-"));
    sandbox = prepareSandbox({ root, config: loadStackConfig(path.join(REPO_ROOT, "Pulumi.local.yaml")), vault });
    first = await apply(sandbox.config);
    for (const app of ["app-a", "app-b"]) {
        const files = sandbox.agentFiles(app);
        oldAgent[app] = { cert: files.certPem, key: files.keyPem };
    }
    rotated = await apply(withEpoch(sandbox.config, "local-2"), first.state);
    again = await apply(withEpoch(sandbox.config, "local-2"), rotated.state);
}, 300_000);

afterAll(() => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

type Report = Record<string, Record<string, unknown>>;

it("renders each app's fullchain through a real agent and passes the checklist", () => {
    const apps = first.evaluation.exports.apps as Report;
    for (const app of ["app-a", "app-b"]) {
        expect(apps[app].leafSerial).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
        expect(apps[app].leafDaysLeft).toBeGreaterThan(2);
        const fullchain = fs.readFileSync(path.join(sandbox.home(app), "tls", `${app}.fullchain.pem`), "utf8");
        expect(fullchain).toContain("BEGIN CERTIFICATE");
        expect(fs.statSync(path.join(sandbox.home(app), "vault", "mtls", "agent.key")).mode & 0o777).toBe(0o600);
    }
    expect(apps["app-a"].kvStatus).toBe("seeded");
    expect(apps["app-b"].kvStatus).toBe("missing");
});

it("rotates: new agent and leaf serials, the old agent cert revoked", async () => {
    const before = first.evaluation.exports.apps as Report;
    const after = rotated.evaluation.exports.apps as Report;
    for (const app of ["app-a", "app-b"]) {
        expect(after[app].agentCertSerial).not.toBe(before[app].agentCertSerial);
        expect(after[app].leafSerial).not.toBe(before[app].leafSerial);
        expect(after[app].previousLeafSerial).toBe(before[app].leafSerial);
        const old = await vaultRequest(vault, "GET", `pki_int/cert/${before[app].agentCertSerial}`);
        expect((old.body as { data: { revocation_time: number } }).data.revocation_time).toBeGreaterThan(0);
        // ...and cert auth refuses it (its CRL copy was refreshed), while the new cert logs in.
        const login = (cert: string, key: string) =>
            vaultRequest(vault, "POST", "auth/cert/login", { name: `agent-${app}` }, { token: null, clientCertPem: cert, clientKeyPem: key });
        expect((await login(oldAgent[app].cert, oldAgent[app].key)).status).toBeGreaterThanOrEqual(400);
        const current = sandbox.agentFiles(app);
        const fresh = await login(current.certPem, current.keyPem);
        expect(fresh.status).toBe(200);
    }
    const replaced = rotated.steps.filter((s) => s.action === "replace").map((s) => s.name);
    expect(replaced).toEqual(expect.arrayContaining(["app-a-agent-keygen", "app-a-leaf-rotate", "app-b-agent-revocation"]));
    expect(rotated.steps.filter((s) => s.type === "vault:pkiSecret/secretBackendRole:SecretBackendRole").every((s) => s.action === "same")).toBe(true);
});

it("keeps the agent key on the host only: a new key per epoch, no copy in any resource's state", () => {
    const everything = JSON.stringify([first.state, rotated.state, again.state].map((s) => Object.values(s.resources).map((e) => [e.inputs, e.outputs])));
    for (const app of ["app-a", "app-b"]) {
        const current = sandbox.agentFiles(app).keyPem;
        expect(current).not.toBe(oldAgent[app].key);
        expect(fs.readdirSync(path.join(sandbox.home(app), "vault", "mtls")).sort()).toEqual(["agent.crt", "agent.key"]);
        for (const key of [oldAgent[app].key, current]) {
            for (const needle of privateKeyNeedles(key)) expect(everything).not.toContain(needle);
        }
    }
    expect(everything).not.toMatch(/PRIVATE KEY-----/);
    // CrossGuard's check of what the host steps printed agrees, on the real outputs.
    for (const state of [first.state, rotated.state]) {
        for (const e of Object.values(state.resources)) expect(checkNoKeyMaterialInCommandOutput({ type: e.type, name: e.name, props: e.outputs })).toEqual([]);
    }
    expect(Object.values(rotated.state.resources).filter((e) => e.type === "command:local:Command").length).toBeGreaterThan(0);
});

it("changes nothing on a second run with the same epoch", () => {
    expect(again.steps.filter((s) => s.action !== "same")).toEqual([]);
});
