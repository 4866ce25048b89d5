// Day one against a Vault the runbook already configured, on a real Vault: cert
// auth enabled by hand, hand-made roles, policies and mappings with drifted
// values (and one old mapping under another name), and agent files on the hosts
// issued by `pki/issue`. The first run adopts the method, notes per object what
// it takes over, corrects every object, lists the old mapping, and revokes the
// hand-issued agent cert so it logs in nowhere afterwards. A method of another
// type at the configured path fails, naming the path, and changes nothing.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { vaultNames } from "../../lib/naming";
import { parseCertificate } from "../../providers/pem";
import { certAuthMountProvider } from "../../providers/certAuthMount";
import { revokeReplacedAgentCert } from "../../providers/rotationCheck";
import { applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { withEpoch } from "../support/harness";
import { runningAsRoot } from "../support/hostUsers";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { renamedLocalStack } from "../support/stacks";
import { enabledAuthMethods, setupProductionLikeVault, testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
const ROOT = "pki_ad_root";
const PKI = "pki_ad";
const ISSUER = "AD Intermediate CA";
const CERT_PATH = "cert-ad";
const APPS = ["ad-a", "ad-b"];
const agentCn = (app: string) => `agent-${app}.local.internal`;
let sandbox: Sandbox;
let config: Record<string, string>;
let state: ApplierState | undefined;
/** The hand-issued agent certs, with the chain an agent presents (leaf and issuing CA). */
const runbookCerts: Record<string, { certPem: string; keyPem: string; serial: string }> = {};
let first: ApplyResult;

const asAppUser = (app: string, cmd: string, input?: string) =>
    runningAsRoot()
        ? execFileSync("runuser", ["-u", sandbox.user(app).name, "--", "/bin/sh", "-c", cmd], { input })
        : execFileSync("/bin/sh", ["-c", cmd], { input });

async function must(method: string, apiPath: string, body?: unknown) {
    const r = await vaultRequest(vault, method, apiPath, body);
    if (r.status >= 300) throw new Error(`${method} ${apiPath}: ${r.status} ${JSON.stringify(r.body)}`);
    return r;
}

const loginWith = (mapping: string, certPem: string, keyPem: string) =>
    vaultRequest<{ auth?: { client_token?: string } }>(vault, "POST", `auth/${CERT_PATH}/login`, { name: mapping }, { token: null, clientCertPem: certPem, clientKeyPem: keyPem });

beforeAll(async () => {
    const pki = await setupProductionLikeVault(vault, { pkiRoot: ROOT, pkiMount: PKI, issuerCommonName: ISSUER });
    const renamed = renamedLocalStack("ad");
    const vaultConfig = { ...JSON.parse(renamed["vault-rotation:vault"]), pkiMount: PKI, issuerCommonName: ISSUER, certAuthPath: CERT_PATH };
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-adopt-"));
    sandbox = prepareSandbox({ root, config: { ...renamed, "vault-rotation:vault": JSON.stringify(vaultConfig) }, vault });
    config = sandbox.config;

    // What the runbook left: the method, permissive hand-made objects, an old mapping.
    await must("POST", `sys/auth/${CERT_PATH}`, { type: "cert", description: "enabled by hand (runbook part 3)" });
    await must("POST", `${PKI}/roles/runbook-agents`, { allow_any_name: true, client_flag: true, server_flag: true, key_type: "ec", key_bits: 256, max_ttl: "720h" });
    for (const app of APPS) {
        const names = vaultNames(app);
        await must("POST", `${PKI}/roles/${names.agentRole}`, { allowed_domains: ["local.internal"], allow_subdomains: true, allow_any_name: true, server_flag: true, client_flag: true, ttl: "720h", max_ttl: "720h" });
        await must("PUT", `sys/policies/acl/${names.issuePolicy}`, { policy: `path "${PKI}/issue/*" { capabilities = ["update"] }\n` });
        // Trusts the whole root, any CN under it, and hands out the debug policy.
        await must("POST", `auth/${CERT_PATH}/certs/${names.mapping}`, { certificate: `${pki.rootCaPem}\n`, token_policies: ["default", "debug-policy"], token_ttl: 86400 });
        // The agent's files as `pki/issue` made them by hand, key and cert, in the app's home.
        const issued = await must("POST", `${PKI}/issue/runbook-agents`, { common_name: agentCn(app), ttl: "72h" });
        const d = (issued.body as { data: { certificate: string; issuing_ca: string; private_key: string; serial_number: string } }).data;
        runbookCerts[app] = { certPem: `${d.certificate}\n${d.issuing_ca}`, keyPem: d.private_key, serial: d.serial_number };
        const mtls = `${sandbox.home(app)}/vault/mtls`;
        asAppUser(app, `umask 077; mkdir -p '${mtls}' && cat > '${mtls}/agent.key'`, d.private_key);
        asAppUser(app, `cat > '${mtls}/agent.crt'`, d.certificate);
    }
    await must("POST", `auth/${CERT_PATH}/certs/old-agent-ad-a`, { certificate: `${pki.rootCaPem}\n`, allowed_common_names: [agentCn("ad-a")], token_policies: ["default"] });
    // Before the program: the hand-issued cert logs in (through the old mapping).
    expect((await loginWith("old-agent-ad-a", runbookCerts["ad-a"].certPem, runbookCerts["ad-a"].keyPem)).status).toBe(200);

    first = await applyProgram({ config: withEpoch(config, "ad-1"), state, vault, stack: "ad" });
    state = first.state;
}, 300_000);

const savedToken = process.env.VAULT_TOKEN;
afterAll(() => {
    if (savedToken === undefined) delete process.env.VAULT_TOKEN;
    else process.env.VAULT_TOKEN = savedToken;
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

it("adopts the enabled cert auth method and lists the old mapping it does not manage", async () => {
    expect(first.evaluation.exports.adoption).toMatchObject({ certAuthMethod: `adopted auth/${CERT_PATH}/ (it existed)`, mappingsNotManaged: ["old-agent-ad-a"] });
    const entry = (await enabledAuthMethods(vault))[`${CERT_PATH}/`];
    expect(entry.type).toBe("cert");
    expect(entry.description).toBe("mTLS login for Vault Agents (managed by vault-rotation)");
});

it("notes, per object, what the first write took over", () => {
    const notes = (first.evaluation.exports.adoption as { takeoverNotes: string[] }).takeoverNotes;
    // The same lines the surveys recorded, one per object that existed: 3 per app here.
    expect([...notes].sort()).toEqual(
        Object.values(first.state.resources)
            .filter((r) => r.type === "pulumi-nodejs:dynamic/vault-rotation:VaultTakeover")
            .flatMap((r) => r.outputs.notes as string[])
            .sort(),
    );
    expect(notes).toHaveLength(6);
    for (const app of APPS) {
        const names = vaultNames(app);
        const role = notes.find((n) => n.startsWith(`took over existing PKI role ${PKI}/roles/${names.agentRole}: `));
        expect(role).toMatch(/allow_subdomains true -> false/);
        expect(role).toMatch(/allow_any_name true -> false/);
        expect(role).toMatch(/server_flag true -> false/);
        expect(role).toMatch(/ttl 2592000 -> 259200/);
        expect(notes).toContainEqual(expect.stringMatching(new RegExp(`^took over existing policy sys/policies/acl/${names.issuePolicy}: rules replaced \\(1 lines before, \\d+ now\\)$`)));
        const mapping = notes.find((n) => n.startsWith(`took over existing cert-auth mapping auth/${CERT_PATH}/certs/${names.mapping}: `));
        expect(mapping).toMatch(/certificate trusts \["Prod Root CA"\] -> the issuing CA \["AD Intermediate CA"\]/);
        expect(mapping).toMatch(/token_policies \["debug-policy","default"\] -> /);
        expect(mapping).toMatch(/allowed_organizational_units \[\] -> \["vault-rotation agent-/);
    }
    // Objects that did not exist get no note.
    expect(notes.filter((n) => n.includes("nginx-ad-"))).toEqual([]);
});

it("corrects every hand-made object", async () => {
    for (const app of APPS) {
        const names = vaultNames(app);
        const role = (await must("GET", `${PKI}/roles/${names.agentRole}`)).body as { data: Record<string, unknown> };
        expect(role.data).toMatchObject({ allow_subdomains: false, allow_any_name: false, server_flag: false, client_flag: true, allowed_domains: [agentCn(app)], ou: [names.agentIdentityOu] });
        const mapping = (await must("GET", `auth/${CERT_PATH}/certs/${names.mapping}`)).body as { data: Record<string, unknown> };
        expect(parseCertificate(String(mapping.data.certificate)).subjectCN).toBe(ISSUER);
        expect(mapping.data.allowed_organizational_units).toEqual([names.agentIdentityOu]);
        expect((mapping.data.token_policies as string[]).sort()).not.toContain("debug-policy");
        const policy = (await must("GET", `sys/policies/acl/${names.issuePolicy}`)).body as { data: { policy: string } };
        expect(policy.data.policy).toContain(`${PKI}/issue/${names.leafRole}`);
        // The program's own agent files log in.
        const own = sandbox.agentFiles(app);
        expect((await loginWith(names.mapping, own.certPem, own.keyPem)).status).toBe(200);
    }
});

it("revokes the hand-issued agent cert each host held: it logs in nowhere afterwards", async () => {
    const apps = first.evaluation.exports.apps as Record<string, { revokedHandIssuedAgentCert: string }>;
    for (const app of APPS) {
        expect(apps[app].revokedHandIssuedAgentCert).toBe(runbookCerts[app].serial);
        const stored = (await must("GET", `${PKI}/cert/${runbookCerts[app].serial}`)).body as { data: { revocation_time: number } };
        expect(stored.data.revocation_time).toBeGreaterThan(0);
    }
    // Not even through the old mapping, which trusts the whole root: cert auth has the CRL.
    const r = await loginWith("old-agent-ad-a", runbookCerts["ad-a"].certPem, runbookCerts["ad-a"].keyPem);
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.body.auth).toBeUndefined();
});

it("revokes nothing else an app user's planted serial names: not another stack's agent cert for the same CN, not a leaf, not the live cert", async () => {
    process.env.VAULT_TOKEN = vault.token;
    const app = "ad-a";
    const live = sandbox.agentFiles(app).certPem;
    const issue = async (role: string, body: Record<string, unknown>) => {
        await must("POST", `${PKI}/roles/${role}`, { allowed_domains: [agentCn(app)], allow_bare_domains: true, key_type: "ec", key_bits: 256, max_ttl: "2h", ...body });
        const r = await must("POST", `${PKI}/issue/${role}`, { common_name: agentCn(app), ttl: "1h" });
        return (r.body as { data: { serial_number: string } }).data.serial_number;
    };
    // Another shard on the same mount, same app name: its agent cert carries that stack's mark.
    const otherStack = await issue("agent-eu2-ad-a", { client_flag: true, server_flag: false, ou: "vault-rotation agent-eu2-ad-a" });
    // A server cert for the same name.
    const leaf = await issue("ad-a-leaf-like", { client_flag: false, server_flag: true });
    const base = {
        connection: { address: vault.address, caCertFile: vault.caCertFile },
        app,
        certAuthPath: CERT_PATH,
        mappingName: `agent-${app}`,
        agentCertPem: live,
        pkiMount: PKI,
    } as Parameters<typeof revokeReplacedAgentCert>[0];
    expect(await revokeReplacedAgentCert({ ...base, replacedAgentCertSerial: otherStack.replace(/:/g, "") })).toEqual({ revokedReplacedAgentCert: "", replacedAgentCertNote: "" });
    expect((await revokeReplacedAgentCert({ ...base, replacedAgentCertSerial: leaf.replace(/:/g, "") })).replacedAgentCertNote).toMatch(/is not a client certificate; not revoked/);
    expect(await revokeReplacedAgentCert({ ...base, replacedAgentCertSerial: parseCertificate(live).serial })).toEqual({ revokedReplacedAgentCert: "", replacedAgentCertNote: "" });
    expect((await revokeReplacedAgentCert({ ...base, replacedAgentCertSerial: "0badc0ffee" })).replacedAgentCertNote).toMatch(/was not issued by pki_ad; not revoked/);
    for (const serial of [otherStack, leaf, parseCertificate(live).serial]) {
        const stored = (await must("GET", `${PKI}/cert/${serial}`)).body as { data: { revocation_time: number } };
        expect({ serial, revoked: stored.data.revocation_time > 0 }).toEqual({ serial, revoked: false });
    }
});

it("a second run changes nothing and notes nothing again", async () => {
    const again = await applyProgram({ config: withEpoch(config, "ad-1"), state, vault, stack: "ad" });
    state = again.state;
    expect(again.steps.filter((s) => s.action !== "same").map((s) => `${s.action} ${s.name}`)).toEqual([]);
});

it("refuses a method of another type at vault.certAuthPath, naming the path, and changes nothing", async () => {
    await must("POST", "sys/auth/ad-userpass", { type: "userpass", description: "someone else's" });
    process.env.VAULT_TOKEN = vault.token;
    const connection = { address: vault.address, caCertFile: vault.caCertFile };
    await expect(certAuthMountProvider.create({ connection, path: "ad-userpass", description: "mTLS login for Vault Agents (managed by vault-rotation)" })).rejects.toThrow(
        'vault.certAuthPath: auth/ad-userpass/ is already enabled as a "userpass" auth method, not "cert": nothing was changed',
    );
    expect((await enabledAuthMethods(vault))["ad-userpass/"]).toMatchObject({ type: "userpass", description: "someone else's" });
});

it("enables the method where none exists, and on delete disables only what it enabled", async () => {
    process.env.VAULT_TOKEN = vault.token;
    const connection = { address: vault.address, caCertFile: vault.caCertFile };
    const description = "mTLS login for Vault Agents (managed by vault-rotation)";
    const made = await certAuthMountProvider.create({ connection, path: "cert-ad-fresh", description });
    expect(made.outs).toMatchObject({ adopted: false, preexistingMappings: [] });
    const adopted = (await certAuthMountProvider.create({ connection, path: CERT_PATH, description })).outs!;
    expect(adopted.adopted).toBe(true);
    await certAuthMountProvider.delete!("cert-ad-fresh", made.outs!);
    await certAuthMountProvider.delete!(CERT_PATH, adopted);
    const listed = await enabledAuthMethods(vault);
    expect(listed["cert-ad-fresh/"]).toBeUndefined();
    expect(listed[`${CERT_PATH}/`]).toBeDefined();
});
