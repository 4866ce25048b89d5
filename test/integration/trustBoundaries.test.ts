// Who may log in as an agent, and what a revocation ends, against a real Vault:
// certificates for an agent's CN that the program never issued (another
// intermediate under the same root, another stack's role on the same mount) are
// refused by its mapping; a replaced agent cert's tokens die with it; and after
// an intermediate rotation the agent keeps logging in while a cert revoked
// under the previous issuer stays refused (every issuer's CRL reaches cert auth).
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { vaultNames } from "../../lib/naming";
import { parseCertificate } from "../../providers/pem";
import { ApplyFailure, applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { withEpoch } from "../support/harness";
import { runningAsRoot } from "../support/hostUsers";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { renamedLocalStack } from "../support/stacks";
import { rotateIntermediate, setupProductionLikeVault, testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
const ROOT = "pki_tb_root";
const PKI = "pki_tb";
const OTHER = "pki_tb_other";
const ISSUER = "TB Intermediate CA";
const CERT_PATH = "cert-tb";
const APP = "tb-a";
const AGENT_CN = "agent-tb-a.local.internal";
let sandbox: Sandbox;
let config: Record<string, string>;
let state: ApplierState | undefined;

/** A shell command as the app's own Unix user (how its attacker plants things). */
const asAppUser = (app: string, cmd: string) =>
    runningAsRoot() ? execFileSync("runuser", ["-u", sandbox.user(app).name, "--", "/bin/sh", "-c", cmd]) : execFileSync("/bin/sh", ["-c", cmd]);

async function apply(epoch: string): Promise<ApplyResult> {
    const r = await applyProgram({ config: withEpoch(config, epoch), state, vault, stack: "tb" });
    state = r.state;
    return r;
}

const login = (certPem: string, keyPem: string) =>
    vaultRequest<{ auth?: { client_token?: string } }>(vault, "POST", `auth/${CERT_PATH}/login`, { name: `agent-${APP}` }, { token: null, clientCertPem: certPem, clientKeyPem: keyPem });

/** A client cert for the agent's CN from a role of someone else's (`ou` as given), with its chain. */
async function foreignCert(mount: string, role: string, ou?: string): Promise<{ certPem: string; keyPem: string }> {
    const made = await vaultRequest(vault, "POST", `${mount}/roles/${role}`, {
        allowed_domains: [AGENT_CN],
        allow_bare_domains: true,
        client_flag: true,
        server_flag: false,
        key_type: "ec",
        key_bits: 256,
        max_ttl: "2h",
        ...(ou !== undefined ? { ou } : {}),
    });
    expect(made.status).toBeLessThan(300);
    const issued = await vaultRequest<{ data: { certificate: string; issuing_ca: string; private_key: string; ca_chain?: string[] } }>(vault, "POST", `${mount}/issue/${role}`, {
        common_name: AGENT_CN,
        ttl: "1h",
    });
    expect(issued.status).toBe(200);
    const d = issued.body.data;
    // The whole chain, as an attacker would present it.
    return { certPem: [d.certificate, ...(d.ca_chain ?? [d.issuing_ca])].join("\n"), keyPem: d.private_key };
}

beforeAll(async () => {
    await setupProductionLikeVault(vault, { pkiRoot: ROOT, pkiMount: PKI, issuerCommonName: ISSUER });
    // Another team's intermediate under the same root.
    await setupProductionLikeVault(vault, { pkiRoot: ROOT, pkiMount: OTHER, issuerCommonName: "Other Team CA" });
    const renamed = renamedLocalStack("tb");
    const vaultConfig = { ...JSON.parse(renamed["vault-rotation:vault"]), pkiMount: PKI, issuerCommonName: ISSUER, certAuthPath: CERT_PATH };
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-trust-"));
    sandbox = prepareSandbox({ root, config: { ...renamed, "vault-rotation:vault": JSON.stringify(vaultConfig) }, vault });
    config = sandbox.config;
    await apply("tb-1");
}, 300_000);

afterAll(() => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

it("the mapping trusts exactly the agent role's issuer and requires the stack's OU mark", async () => {
    const mapping = await vaultRequest<{ data: { certificate: string; allowed_organizational_units: string[]; allowed_common_names: string[] } }>(vault, "GET", `auth/${CERT_PATH}/certs/agent-${APP}`);
    const issuing = await vaultRequest<{ data: { certificate: string } }>(vault, "GET", `${PKI}/cert/ca`, undefined, { token: null });
    expect(mapping.body.data.certificate.trim()).toBe(issuing.body.data.certificate.trim());
    expect(mapping.body.data.allowed_common_names).toEqual([AGENT_CN]);
    expect(mapping.body.data.allowed_organizational_units).toEqual([vaultNames(APP).agentIdentityOu]);
    const own = sandbox.agentFiles(APP);
    expect((await login(own.certPem, own.keyPem)).status).toBe(200);
});

it("refuses a cert for the agent's CN from another intermediate under the same root, even with the OU mark", async () => {
    const attacker = await foreignCert(OTHER, "team-agent", vaultNames(APP).agentIdentityOu);
    const r = await login(attacker.certPem, attacker.keyPem);
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.body.auth).toBeUndefined();
});

it("refuses a cert for the agent's CN from another stack's role on the same mount", async () => {
    // A second stack sharing the Vault: its own prefix makes its own mark; or no mark at all.
    for (const [role, ou] of [
        ["agent-eu1-tb-a", vaultNames(APP, "eu1").agentIdentityOu],
        ["agent-unmarked", undefined],
    ] as const) {
        const attacker = await foreignCert(PKI, role, ou);
        const r = await login(attacker.certPem, attacker.keyPem);
        expect({ role, status: r.status >= 400 }).toEqual({ role, status: true });
    }
});

it("a rotation revokes the tokens the old agent cert obtained", async () => {
    const old = sandbox.agentFiles(APP);
    const session = await login(old.certPem, old.keyPem);
    const token = session.body.auth!.client_token!;
    expect((await vaultRequest(vault, "GET", "auth/token/lookup-self", undefined, { token })).status).toBe(200);
    await apply("tb-2");
    const lookup = await vaultRequest(vault, "GET", "auth/token/lookup-self", undefined, { token });
    expect(lookup.status).toBe(403);
    // The new cert's tokens are untouched (the agent logged in with it during the run).
    const now = sandbox.agentFiles(APP);
    expect((await login(now.certPem, now.keyPem)).status).toBe(200);
}, 300_000);

it("keeps the agent logging in through an intermediate rotation, and refuses the revoked cert of the old issuer", async () => {
    const beforeRotation = sandbox.agentFiles(APP);
    const oldIssuerChain = await vaultRequest<{ data: { certificate: string } }>(vault, "GET", `${PKI}/cert/ca_chain`, undefined, { token: null });
    await rotateIntermediate(vault, ROOT, PKI, ISSUER);
    // Until the next run the mapping still trusts the old issuer: the agent's current cert logs in.
    expect((await login(beforeRotation.certPem, beforeRotation.keyPem)).status).toBe(200);
    const r = await apply("tb-3");
    const report = (r.evaluation.exports.apps as Record<string, Record<string, string>>)[APP];
    const after = sandbox.agentFiles(APP);
    expect((await login(after.certPem, after.keyPem)).status).toBe(200);
    // The replaced cert was the old issuer's: refused, also when it presents the old chain.
    const withChain = `${beforeRotation.certPem.trim()}\n${oldIssuerChain.body.data.certificate}`;
    expect((await login(withChain, beforeRotation.keyPem)).status).toBeGreaterThanOrEqual(400);
    // ...and it is on a CRL cert auth has: the old issuer's, registered under its issuer id.
    const oldSerial = BigInt(`0x${parseCertificate(beforeRotation.certPem).serial.replace(/:/g, "")}`).toString();
    const issuers = await vaultRequest<{ data: { keys: string[] } }>(vault, "LIST", `${PKI}/issuers`);
    const listing: string[] = [];
    for (const id of issuers.body.data.keys) {
        const crl = await vaultRequest<{ data?: { serials?: Record<string, unknown> } }>(vault, "GET", `auth/${CERT_PATH}/crls/${PKI}-${id}`);
        if (crl.status === 200 && oldSerial in (crl.body.data?.serials ?? {})) listing.push(id);
    }
    expect(listing).toHaveLength(1);
    // (The default issuer's CRL, the only one copied before, is the new issuer's: the old serial is not on it.)
    const defaultCrl = await vaultRequest<{ data?: { serials?: Record<string, unknown> } }>(vault, "GET", `auth/${CERT_PATH}/crls/${PKI}`);
    expect(oldSerial in (defaultCrl.body.data?.serials ?? {})).toBe(false);
    expect(report.agentCertSerial).not.toBe(parseCertificate(beforeRotation.certPem).serial);
}, 300_000);

it("a plant in one app's home fails that app and the update, while every other app rotates and is verified", async () => {
    const before = (state!.resources && Object.values(state!.resources).find((e) => e.name === "tb-a-agent-cert")!.outputs.serialNumber) as string;
    const victimBefore = Object.values(state!.resources).find((e) => e.name === "tb-b-agent-cert")!.outputs.serialNumber as string;
    // tb-b's user replaces its ~/vault by a link (the step refuses it, rightly).
    const home = sandbox.home("tb-b");
    asAppUser("tb-b", `mv ${home}/vault ${home}/vault.real && ln -s ${home}/vault.real ${home}/vault`);
    let failure: ApplyFailure | undefined;
    try {
        await applyProgram({ config: withEpoch(config, "tb-4"), state, vault, stack: "tb", continueOnError: true });
    } catch (e) {
        if (!(e instanceof ApplyFailure)) throw e;
        failure = e;
    }
    expect(failure).toBeDefined();
    state = failure!.result.state;
    expect(failure!.failures.map((f) => f.name)).toEqual(["tb-b-agent-keygen"]);
    expect(failure!.message).toMatch(/^update failed: tb-b-agent-keygen: .*refusing .*\/vault: it is a symbolic link/);
    // tb-a was rotated and checked all the same; its old agent cert is revoked.
    const steps = failure!.result.steps.filter((s) => s.action !== "same").map((s) => `${s.action} ${s.name}`);
    expect(steps).toEqual(expect.arrayContaining(["replace tb-a-agent-keygen", "replace tb-a-leaf-rotate", "replace tb-a-check"]));
    expect(steps.filter((s) => s.includes("tb-b-"))).toEqual([]);
    const after = Object.values(state.resources).find((e) => e.name === "tb-a-agent-cert")!.outputs.serialNumber as string;
    expect(after).not.toBe(before);
    const old = await vaultRequest<{ data: { revocation_time: number } }>(vault, "GET", `${PKI}/cert/${before}`);
    expect(old.body.data.revocation_time).toBeGreaterThan(0);
    const files = sandbox.agentFiles(APP);
    expect((await login(files.certPem, files.keyPem)).status).toBe(200);
    // tb-b keeps what it had: its recorded cert is still the one its host holds.
    expect(Object.values(state.resources).find((e) => e.name === "tb-b-agent-cert")!.outputs.serialNumber).toBe(victimBefore);
    // Once the plant is gone, the next run rotates tb-b too.
    asAppUser("tb-b", `rm ${home}/vault && mv ${home}/vault.real ${home}/vault`);
    const healed = await apply("tb-4");
    expect(healed.steps.filter((s) => s.action === "replace").map((s) => s.name)).toEqual(expect.arrayContaining(["tb-b-agent-keygen", "tb-b-check"]));
}, 300_000);

it("an incident rotation (rotation.revokePreviousLeaf) revokes each app's previous leaf once the new one is in service, and never a certificate the host planted", async () => {
    const leafBefore = (app: string) => (Object.values(state!.resources).find((e) => e.name === `${app}-check`)!.outputs.leafSerial as string);
    const previousA = leafBefore("tb-a");
    // tb-b's user plants another certificate of the same PKI (not its own) as its served fullchain,
    // hoping the incident run revokes that one as "tb-b's previous leaf".
    expect((await vaultRequest(vault, "POST", `${PKI}/roles/tb-other`, { allowed_domains: ["other.internal"], allow_bare_domains: true, server_flag: true, key_type: "ec", key_bits: 256, max_ttl: "2h" })).status).toBeLessThan(300);
    const other = await vaultRequest<{ data: { certificate: string; serial_number: string } }>(vault, "POST", `${PKI}/issue/tb-other`, { common_name: "other.internal", ttl: "1h" });
    const fullchainB = path.join(sandbox.home("tb-b"), "tls", "tb-b.fullchain.pem");
    asAppUser("tb-b", `printf '%s\\n' '${other.body.data.certificate}' > ${fullchainB}`);
    const rotation = { ...JSON.parse(config["vault-rotation:rotation"]), epoch: "tb-incident", revokePreviousLeaf: true };
    let failure: ApplyFailure | undefined;
    try {
        await applyProgram({ config: { ...config, "vault-rotation:rotation": JSON.stringify(rotation) }, state, vault, stack: "tb", continueOnError: true });
    } catch (e) {
        if (!(e instanceof ApplyFailure)) throw e;
        failure = e;
    }
    expect(failure?.failures.map((f) => f.name)).toEqual(["tb-b-check"]);
    expect(failure!.message).toMatch(/tb-b: revoke previous leaf: expected the previous leaf .* to be tb-b\.internal's certificate as pki_tb issued it, found a certificate for other\.internal/);
    state = failure!.result.state;
    const revoked = async (serial: string) => Number((await vaultRequest<{ data: { revocation_time: number } }>(vault, "GET", `${PKI}/cert/${serial}`)).body.data.revocation_time) > 0;
    // Not the planted certificate; tb-a's own previous leaf, yes, and not its new one.
    expect(await revoked(other.body.data.serial_number)).toBe(false);
    const checkA = Object.values(state.resources).find((e) => e.name === "tb-a-check")!.outputs;
    expect(checkA.previousLeafSerial).toBe(previousA);
    expect(checkA.revokedPreviousLeaf).toBe(previousA);
    expect(await revoked(previousA)).toBe(true);
    expect(await revoked(String(checkA.leafSerial))).toBe(false);
}, 300_000);
