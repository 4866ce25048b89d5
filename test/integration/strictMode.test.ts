// Strict auth against real Vault: an app that starts with `agent.debugPolicy: true`
// gets `debug-policy` on its mapping and its login tokens; switching it off
// (strict mode) takes it off both. In either mode the agent authenticates with
// the cert method and nothing else.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { runRotationCheck, RotationCheckInputs } from "../../providers/rotationCheck";
import { withLogin } from "../support/hostState";
import { applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { flattenConfig } from "../support/harness";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
const APP = "sm-a";
const CERT_PATH = "cert-sm";
const MAPPING = `auth/${CERT_PATH}/certs/agent-${APP}`;

function stackConfig(debugPolicy: boolean): Record<string, string> {
    return flattenConfig({
        "vault:address": vault.address,
        "vault:caCertFile": vault.caCertFile,
        "vault-rotation:rotation": { epoch: "sm-1", runInterval: "4h", leafMinRemaining: "1h", waitSeconds: 60 },
        "vault-rotation:vault": { pkiMount: "pki_int", issuerCommonName: "Prod Intermediate CA", certAuthPath: CERT_PATH, kvMount: "secret" },
        "vault-rotation:apps": [
            {
                name: APP,
                user: APP,
                home: `/home/${APP}`,
                host: { local: true },
                agent: { commonName: "agent-sm-a.sm.internal", ttl: "24h", debugPolicy },
                leaf: { commonName: "sm-a.internal", allowedDomains: ["sm-a.internal"], ttl: "72h" },
                kv: { access: false },
                reload: { label: "tls=true" },
            },
        ],
    });
}

function outputsOf(state: ApplierState, name: string): Record<string, unknown> {
    const entries = Object.values(state.resources).filter((e) => e.name === name);
    if (entries.length !== 1) throw new Error(`expected one resource named ${name} in the state, found ${entries.length}`);
    return entries[0].outputs;
}

/** A fresh cert login with the agent's current cert and its key on the host; returns the token's policies (sorted) and revokes it. */
async function freshLoginPolicies(state: ApplierState): Promise<string[]> {
    const res = await vaultRequest<{ auth?: { client_token: string; policies: string[] } }>(
        vault,
        "POST",
        `auth/${CERT_PATH}/login`,
        { name: `agent-${APP}` },
        { token: null, clientCertPem: String(outputsOf(state, `${APP}-agent-cert`).certificate), clientKeyPem: sandbox.agentFiles(APP).keyPem },
    );
    if (res.status !== 200 || !res.body.auth) throw new Error(`cert login: ${res.status} ${res.text}`);
    await vaultRequest(vault, "POST", "auth/token/revoke-self", undefined, { token: res.body.auth.client_token });
    return [...res.body.auth.policies].sort();
}

async function mappingPolicies(): Promise<string[]> {
    const res = await vaultRequest<{ data: { token_policies: string[] } }>(vault, "GET", MAPPING);
    if (res.status !== 200) throw new Error(`GET ${MAPPING}: ${res.status} ${res.text}`);
    return [...res.body.data.token_policies].sort();
}

/** The auto_auth methods of an agent config, by their type label. */
function autoAuthMethods(hcl: string): { autoAuthBlocks: number; methods: string[]; unnamedMethods: number } {
    return {
        autoAuthBlocks: (hcl.match(/^\s*auto_auth\s*\{/gm) ?? []).length,
        methods: [...hcl.matchAll(/^\s*method\s+"([^"]*)"\s*\{/gm)].map((m) => m[1]),
        // `method { type = "..." }` is the other way to write one.
        unnamedMethods: (hcl.match(/^\s*method\s*\{/gm) ?? []).length,
    };
}

let sandbox: Sandbox;
let debug: ApplyResult;
let strict: ApplyResult;
let debugHcl: string;
let debugLogin: string[];
let debugPolicyText: { status: number; policy?: string };

beforeAll(async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-sm-"));
    sandbox = prepareSandbox({ root, config: stackConfig(true), vault });
    const strictConfig = { ...sandbox.config, "vault-rotation:apps": JSON.stringify(JSON.parse(sandbox.config["vault-rotation:apps"]).map((a: { agent: object }) => ({ ...a, agent: { ...a.agent, debugPolicy: false } }))) };
    debug = await applyProgram({ config: sandbox.config, vault, stack: "sm", log: () => undefined });
    debugHcl = fs.readFileSync(path.join(sandbox.home(APP), "vault", "agent.hcl"), "utf8");
    debugLogin = await freshLoginPolicies(debug.state);
    const policy = await vaultRequest<{ data?: { policy: string } }>(vault, "GET", "sys/policies/acl/debug-policy");
    debugPolicyText = { status: policy.status, policy: policy.body.data?.policy };
    strict = await applyProgram({ config: strictConfig, state: debug.state, vault, stack: "sm", log: () => undefined });
}, 240_000);

afterAll(() => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

describe("with agent.debugPolicy: true", () => {
    it("creates debug-policy and attaches it to the mapping", () => {
        expect(debugPolicyText.status).toBe(200);
        expect(debugPolicyText.policy).toContain("sys/capabilities-self");
        expect((debug.evaluation.exports.apps as Record<string, { tokenPolicies: string[] }>)[APP].tokenPolicies).toContain("debug-policy");
    });

    it("a fresh cert login carries debug-policy", () => {
        expect(debugLogin).toEqual(["debug-policy", "default", `${APP}-issue`, `${APP}-marker`]);
    });
});

describe("after switching to strict mode (debugPolicy: false)", () => {
    it("the mapping changed, the agent re-logged in (rotate step) and was checked; no credential was replaced", () => {
        const changed = strict.steps.filter((s) => s.action !== "same").map((s) => `${s.action} ${s.name}`);
        expect(changed).toContain(`update ${APP}-agent-mapping`);
        // The rotate step re-runs so that the agent's token loses debug-policy now, not at its expiry.
        // And the verification follows: its login must now get the policies without debug-policy.
        expect(changed.filter((c) => c.startsWith("replace ")).sort()).toEqual(
            [`replace ${APP}-check`, `replace ${APP}-leaf-rotate`, `replace ${APP}-verification`, `replace ${APP}-verified`, `replace ${APP}-verify`].sort(),
        );
        expect(strict.steps.filter((s) => /-agent-(key|csr|cert)$/.test(s.name)).every((s) => s.action === "same")).toBe(true);
    });

    it("debug-policy is gone: no app of the stack asks for it any more", async () => {
        // With the survey that preceded its first write (a record only: deleting it changes nothing in Vault).
        expect(strict.steps.filter((s) => s.action === "delete").map((s) => s.name).sort()).toEqual(["vault-rotation-debug-policy", "vault-rotation-debug-policy-takeover"]);
        expect((await vaultRequest(vault, "GET", "sys/policies/acl/debug-policy")).status).toBe(404);
    });

    it("the mapping's token_policies no longer include debug-policy", async () => {
        expect(await mappingPolicies()).toEqual([`${APP}-issue`, `${APP}-marker`]);
        expect((strict.evaluation.exports.apps as Record<string, { tokenPolicies: string[] }>)[APP].tokenPolicies).not.toContain("debug-policy");
    });

    it("a fresh cert login does not carry debug-policy", async () => {
        expect(await freshLoginPolicies(strict.state)).toEqual(["default", `${APP}-issue`, `${APP}-marker`]);
    });

    it("the program's own check verified the strict policy set", () => {
        const check = outputsOf(strict.state, `${APP}-check`);
        expect(check.expectedPolicies).toEqual(["default", `${APP}-issue`, `${APP}-marker`]);
        expect(check.tokenPolicies).toEqual(["default", `${APP}-issue`, `${APP}-marker`]);
    });

    it("the check fails, naming debug-policy, when a login through the mapping carries it again", async () => {
        const before = await mappingPolicies();
        const inputs = outputsOf(strict.state, `${APP}-check`) as unknown as RotationCheckInputs;
        await vaultRequest(vault, "POST", MAPPING, { token_policies: [...before, "debug-policy"] });
        try {
            // What the host reports after logging in with the agent files: here a real login with the same cert and key.
            const login = `policies=${(await freshLoginPolicies(strict.state)).join(",")}`;
            await expect(runRotationCheck({ ...inputs, hostState: withLogin(inputs.hostState, login) })).rejects.toThrow(
                `${APP}: token policies: expected [default, ${APP}-issue, ${APP}-marker], found [debug-policy, default, ${APP}-issue, ${APP}-marker] (extra [debug-policy])`,
            );
        } finally {
            await vaultRequest(vault, "POST", MAPPING, { token_policies: before });
        }
        expect(await mappingPolicies()).toEqual(before);
    });
});

describe("the agent config on the host", () => {
    it.each([
        ["debug", () => debugHcl],
        ["strict", () => fs.readFileSync(path.join(sandbox.home(APP), "vault", "agent.hcl"), "utf8")],
    ])("in %s mode has exactly one auto_auth method, cert, on this stack's mount and mapping", (_mode, read) => {
        const hcl = read();
        expect(autoAuthMethods(hcl)).toEqual({ autoAuthBlocks: 1, methods: ["cert"], unnamedMethods: 0 });
        expect(hcl).toMatch(new RegExp(`^\\s*mount_path\\s*=\\s*"auth/${CERT_PATH}"\\s*$`, "m"));
        expect(hcl).toMatch(new RegExp(`^\\s*name\\s*=\\s*"agent-${APP}"\\s*$`, "m"));
        // No other credential source anywhere in the file.
        expect(hcl).not.toMatch(/token_file|approle|role_id|secret_id|"token"|use_auto_auth_token\s*=\s*"?force/);
    });

    it("is the file the running agent uses: the agent service is active and rendered the leaf", () => {
        const hostState = String(outputsOf(strict.state, `${APP}-leaf-rotate`).stdout);
        expect(hostState).toMatch(/### service\nactive\n/);
        expect(fs.readFileSync(path.join(sandbox.home(APP), "tls", `${APP}.fullchain.pem`), "utf8")).toContain("BEGIN CERTIFICATE");
    });
});
