// The dynamic providers' objects, called directly against the real dev-TLS Vault
// (as the Pulumi engine would call them): KV detection on v1/v2/missing/non-KV
// mounts, seed-if-absent without ever overwriting, the post-rotation checklist on
// a real rendered fullchain and on certificates that must fail it (the cert login
// verdict as the host reports it, from real logins), version drift against the
// real server, and revocation.
import { execFileSync } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { certRevocationProvider, CertRevocationInputs } from "../../providers/certRevocation";
import type { VaultConnection } from "../../providers/connection";
import { kvMountProvider } from "../../providers/kvMount";
import { ensureKvSeed, KvSeedInputs, kvSeedProvider } from "../../providers/kvSeed";
import { parseCertificate } from "../../providers/pem";
import { parseHostState } from "../../lib/hostState";
import { measureVersions, RotationCheckInputs, rotationCheckProvider, runRotationCheck } from "../../providers/rotationCheck";
import { clientForConnection, VaultClient } from "../../providers/vaultClient";
import { readServerVersion } from "../../providers/versionDrift";
import { applyProgram, ApplierState } from "../support/applier";
import { flattenConfig } from "../support/harness";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { TestPki } from "../support/tls";
import { testVaultFromEnv, vaultRequest } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
const connection: VaultConnection = { address: vault.address, caCertFile: vault.caCertFile };
const savedToken = process.env.VAULT_TOKEN;

beforeAll(() => {
    process.env.VAULT_TOKEN = vault.token;
});

afterAll(() => {
    if (savedToken === undefined) delete process.env.VAULT_TOKEN;
    else process.env.VAULT_TOKEN = savedToken;
});

/** Root-token request that must succeed. */
async function root<T = Record<string, unknown>>(method: string, apiPath: string, body?: unknown): Promise<T> {
    const res = await vaultRequest<T>(vault, method, apiPath, body);
    if (res.status < 200 || res.status > 299) throw new Error(`${method} ${apiPath}: ${res.status} ${res.text}`);
    return res.body;
}

// ---------------------------------------------------------------------------------------------

describe("KvMount", () => {
    const create = (mount: string) => kvMountProvider.create({ connection, mount });

    it("detects KV v2 on secret", async () => {
        const r = await create("secret");
        expect(r).toEqual({ id: "secret", outs: { connection, mount: "secret", type: "kv", version: "2" } });
    });

    it("detects KV v1 on kv1, and read re-detects", async () => {
        const r = await create("kv1");
        expect(r.outs).toMatchObject({ mount: "kv1", type: "kv", version: "1" });
        const read = await kvMountProvider.read!("kv1", r.outs);
        expect(read.props).toMatchObject({ version: "1" });
    });

    it("refuses a missing mount with a clear error", async () => {
        await expect(create("prov-no-such-mount")).rejects.toThrow('KV mount "prov-no-such-mount" does not exist');
    });

    it("refuses a non-KV mount, naming its type", async () => {
        await expect(create("pki")).rejects.toThrow('mount "pki" is not a KV mount: its type is "pki"');
        await expect(create("pki_int")).rejects.toThrow('its type is "pki"');
    });

    it("detects the version with a token that may only use the mount (no read on sys/mounts)", async () => {
        await root("PUT", "sys/policies/acl/prov-kv-user", { policy: 'path "secret/data/apps/*" { capabilities = ["read"] }' });
        const token = (await root<{ auth: { client_token: string } }>("POST", "auth/token/create", { policies: ["prov-kv-user"], ttl: "10m" })).auth.client_token;
        // Proof that the fallback is exercised: this token cannot read sys/mounts/secret.
        expect((await vaultRequest(vault, "GET", "sys/mounts/secret", undefined, { token })).status).toBe(403);
        process.env.VAULT_TOKEN = token;
        try {
            expect((await create("secret")).outs?.version).toBe("2");
            await expect(create("kv1")).rejects.toThrow('KV mount "kv1" does not exist or this token may not see it');
        } finally {
            process.env.VAULT_TOKEN = vault.token;
        }
    });
});

// ---------------------------------------------------------------------------------------------

describe("KvSeed", () => {
    type V2Read = { data: { data: Record<string, string>; metadata: { version: number } } };
    const seedInputs = (version: "1" | "2", app: string, seed: boolean, data?: Record<string, string>): KvSeedInputs => ({
        connection,
        mount: version === "2" ? "secret" : "kv1",
        version,
        path: `apps/${app}`,
        seed,
        data,
    });
    const v2Data = async (app: string) => vaultRequest<V2Read>(vault, "GET", `secret/data/apps/${app}`);
    const v2Meta = async (app: string) => vaultRequest<{ data: { current_version: number; versions: Record<string, unknown> } }>(vault, "GET", `secret/metadata/apps/${app}`);

    describe("on KV v2 (secret)", () => {
        it("existed: an existing path is reported and never overwritten", async () => {
            await root("POST", "secret/data/apps/prov-v2-existed", { data: { owner: "ops" } });
            const r = await kvSeedProvider.create(seedInputs("2", "prov-v2-existed", true, { owner: "seed" }));
            expect(r.outs!.status).toBe("existed");
            const now = await v2Data("prov-v2-existed");
            expect(now.body.data.data).toEqual({ owner: "ops" });
            expect(now.body.data.metadata.version).toBe(1);
            // update (a re-run, e.g. seed data changed) leaves it alone as well
            const u = await kvSeedProvider.update!("secret/apps/prov-v2-existed", r.outs!, seedInputs("2", "prov-v2-existed", true, { owner: "seed-2" }));
            expect(u.outs!.status).toBe("existed");
            expect((await v2Data("prov-v2-existed")).body.data.data).toEqual({ owner: "ops" });
        });

        it("seeded: an absent path with seeding on is written once (version 1) and readable", async () => {
            const r = await kvSeedProvider.create(seedInputs("2", "prov-v2-seeded", true, { owner: "seed", tier: "gold" }));
            expect(r).toMatchObject({ id: "secret/apps/prov-v2-seeded", outs: { status: "seeded" } });
            const now = await v2Data("prov-v2-seeded");
            expect(now.status).toBe(200);
            expect(now.body.data.data).toEqual({ owner: "seed", tier: "gold" });
            expect(now.body.data.metadata.version).toBe(1);
            // A second run finds it and does not write a version 2.
            expect((await kvSeedProvider.create(seedInputs("2", "prov-v2-seeded", true, { owner: "again" }))).outs!.status).toBe("existed");
            expect((await v2Meta("prov-v2-seeded")).body.data.current_version).toBe(1);
            // read keeps "seeded" while the path exists, and says "missing" once it is gone.
            expect((await kvSeedProvider.read!(r.id, r.outs)).props!.status).toBe("seeded");
            await root("DELETE", "secret/metadata/apps/prov-v2-seeded");
            expect((await kvSeedProvider.read!(r.id, r.outs)).props!.status).toBe("missing");
        });

        it("missing: an absent path without seeding is reported and left absent", async () => {
            const r = await kvSeedProvider.create(seedInputs("2", "prov-v2-missing", false));
            expect(r.outs!.status).toBe("missing");
            expect((await v2Meta("prov-v2-missing")).status).toBe(404);
        });

        it("a concurrent writer between the check and the seed wins: CAS refuses our write", async () => {
            const app = "prov-v2-race";
            const real = clientForConnection(connection);
            let raced = false;
            // The other writer lands right after our existence check said "absent".
            const racing: VaultClient = {
                ...real,
                async read(p) {
                    const answer = await real.read(p);
                    if (!raced && p === `secret/metadata/apps/${app}`) {
                        raced = true;
                        await root("POST", `secret/data/apps/${app}`, { data: { owner: "other-writer" } });
                    }
                    return answer;
                },
            };
            const status = await ensureKvSeed(racing, seedInputs("2", app, true, { owner: "seed" }));
            expect(raced).toBe(true);
            expect(status).toBe("existed");
            const now = await v2Data(app);
            expect(now.body.data.data).toEqual({ owner: "other-writer" });
            expect(now.body.data.metadata.version).toBe(1);
        });

        it("a soft-deleted key counts as existing (its history belongs to someone)", async () => {
            const app = "prov-v2-softdel";
            await root("POST", `secret/data/apps/${app}`, { data: { owner: "ops" } });
            await root("DELETE", `secret/data/apps/${app}`);
            expect((await v2Data(app)).status).toBe(404);
            const r = await kvSeedProvider.create(seedInputs("2", app, true, { owner: "seed" }));
            expect(r.outs!.status).toBe("existed");
            // Nothing written: still one (deleted) version, undeletable by its owners.
            expect((await v2Meta(app)).body.data.current_version).toBe(1);
            expect((await v2Data(app)).status).toBe(404);
        });

        it("a destroyed version counts as existing too", async () => {
            const app = "prov-v2-destroyed";
            await root("POST", `secret/data/apps/${app}`, { data: { owner: "ops" } });
            await root("POST", `secret/destroy/apps/${app}`, { versions: [1] });
            expect((await kvSeedProvider.create(seedInputs("2", app, true, { owner: "seed" }))).outs!.status).toBe("existed");
            expect((await v2Meta(app)).body.data.current_version).toBe(1);
        });

        it("delete (destroy or replace) never removes the secret", async () => {
            const r = await kvSeedProvider.create(seedInputs("2", "prov-v2-keep", true, { owner: "seed" }));
            expect(r.outs!.status).toBe("seeded");
            await kvSeedProvider.delete!(r.id, r.outs!);
            const now = await v2Data("prov-v2-keep");
            expect(now.status).toBe(200);
            expect(now.body.data.data).toEqual({ owner: "seed" });
        });
    });

    describe("on KV v1 (kv1)", () => {
        const v1 = (app: string) => vaultRequest<{ data: Record<string, string> }>(vault, "GET", `kv1/apps/${app}`);

        it("existed: never overwritten", async () => {
            await root("POST", "kv1/apps/prov-v1-existed", { owner: "ops" });
            expect((await kvSeedProvider.create(seedInputs("1", "prov-v1-existed", true, { owner: "seed" }))).outs!.status).toBe("existed");
            expect((await v1("prov-v1-existed")).body.data).toEqual({ owner: "ops" });
        });

        it("seeded: written when absent, and found on the next run", async () => {
            const r = await kvSeedProvider.create(seedInputs("1", "prov-v1-seeded", true, { owner: "seed" }));
            expect(r.outs!.status).toBe("seeded");
            expect((await v1("prov-v1-seeded")).body.data).toEqual({ owner: "seed" });
            expect((await kvSeedProvider.create(seedInputs("1", "prov-v1-seeded", true, { owner: "again" }))).outs!.status).toBe("existed");
            expect((await v1("prov-v1-seeded")).body.data).toEqual({ owner: "seed" });
        });

        it("missing: left absent", async () => {
            expect((await kvSeedProvider.create(seedInputs("1", "prov-v1-missing", false))).outs!.status).toBe("missing");
            expect((await v1("prov-v1-missing")).status).toBe(404);
        });

        it("re-checks right before writing: a writer landing after the first check is not overwritten", async () => {
            const app = "prov-v1-race";
            const real = clientForConnection(connection);
            let reads = 0;
            const racing: VaultClient = {
                ...real,
                async read(p) {
                    const answer = await real.read(p);
                    if (p === `kv1/apps/${app}` && ++reads === 1) await root("POST", `kv1/apps/${app}`, { owner: "other-writer" });
                    return answer;
                },
            };
            expect(await ensureKvSeed(racing, seedInputs("1", app, true, { owner: "seed" }))).toBe("existed");
            expect((await v1(app)).body.data).toEqual({ owner: "other-writer" });
        });

        it("delete never removes the secret", async () => {
            const r = await kvSeedProvider.create(seedInputs("1", "prov-v1-keep", true, { owner: "seed" }));
            await kvSeedProvider.delete!(r.id, r.outs!);
            expect((await v1("prov-v1-keep")).body.data).toEqual({ owner: "seed" });
        });
    });
});

// ---------------------------------------------------------------------------------------------

describe("RotationCheck, on a stack applied for real", () => {
    const APP = "prov-rc";
    const CERT_PATH = "cert-prov";
    let sandbox: Sandbox;
    let state: ApplierState;
    let base: RotationCheckInputs;
    let fullchain: string;
    let pki: TestPki;
    const NOW = new Date();

    /** The host's login verdict from the applied run (the read-state step's `### login` line). */
    let hostLogin: string;
    /** The read-host-state output the check parses. */
    const hostState = (chain: string, previous = "", service = "active", login = hostLogin) =>
        `### fullchain\n${chain.trim()}\n### previous\n${previous.trim()}\n### reload\nresult=ok reloaded=web failed=\n### service\n${service}\n### login\n${login}\n### agent-version\nVault v${vault.version}\n### end\n`;

    /** What the host reports for a cert login with this cert and key: a real login here, one line as the host prints it. */
    async function loginLine(mapping: string, certPem: string, keyPem: string): Promise<string> {
        const res = await vaultRequest<{ auth?: { client_token: string; token_policies: string[] }; errors?: string[] }>(
            vault,
            "POST",
            `auth/${CERT_PATH}/login`,
            { name: mapping },
            { token: null, clientCertPem: certPem, clientKeyPem: keyPem },
        );
        if (res.status !== 200 || !res.body.auth) return `error=Code: ${res.status}. Errors: ${(res.body.errors ?? []).join("; ")}`;
        await vaultRequest(vault, "POST", "auth/token/revoke-self", undefined, { token: res.body.auth.client_token });
        return `policies=${[...res.body.auth.token_policies].sort().join(",")}`;
    }

    /** The checklist lines of a failed check (without the header and the advice). */
    async function failureLines(inputs: Partial<RotationCheckInputs>, now = NOW): Promise<string[]> {
        let message: string;
        try {
            await runRotationCheck({ ...base, ...inputs }, { now });
            return [];
        } catch (e) {
            message = (e as Error).message;
        }
        const lines = message.split("\n");
        expect(lines[0]).toMatch(new RegExp(`^vault-rotation: the post-rotation check failed for ${APP} \\(${lines.length - 2} items?\\):$`));
        expect(lines[lines.length - 1]).toMatch(/^What to do: .*journalctl --user -u vault-agent-prov-rc$/);
        return lines.slice(1, -1).map((l) => l.trim());
    }

    beforeAll(async () => {
        pki = TestPki.create();
        const config = flattenConfig({
            "vault:address": vault.address,
            "vault:caCertFile": vault.caCertFile,
            "vault-rotation:rotation": { epoch: "prov-1", runInterval: "4h", leafMinRemaining: "1h", waitSeconds: 60 },
            "vault-rotation:vault": { pkiMount: "pki_int", issuerCommonName: "Prod Intermediate CA", certAuthPath: CERT_PATH, kvMount: "secret" },
            "vault-rotation:apps": [
                {
                    name: APP,
                    user: APP,
                    home: `/home/${APP}`,
                    host: { local: true },
                    agent: { commonName: "agent-prov-rc.prov.internal", ttl: "24h" },
                    leaf: { commonName: "prov-rc.internal", altNames: ["prov-rc.prov.example.com"], allowedDomains: ["prov-rc.internal", "prov-rc.prov.example.com"], ttl: "72h" },
                    kv: { access: false },
                    reload: { label: "tls=true" },
                },
            ],
        });
        sandbox = prepareSandbox({ root: fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-prov-")), config, vault });
        const applied = await applyProgram({ config: sandbox.config, vault, stack: "prov", log: () => undefined });
        process.env.VAULT_TOKEN = vault.token;
        state = applied.state;
        const check = Object.values(state.resources).find((e) => e.name === `${APP}-check`);
        if (!check) throw new Error("no RotationCheck in the applied state");
        base = check.outputs as unknown as RotationCheckInputs;
        hostLogin = parseHostState(base.hostState).login;
        fullchain = fs.readFileSync(path.join(sandbox.home(APP), "tls", `${APP}.fullchain.pem`), "utf8");
        base = { ...base, hostState: hostState(fullchain) };
    }, 240_000);

    afterAll(() => {
        sandbox?.close();
        if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
        pki?.cleanup();
    });

    const leafOf = (pem: string) => parseCertificate(pem);

    it("passes on the fullchain the real agent rendered, through the provider's create", async () => {
        const leaf = leafOf(fullchain);
        const r = await rotationCheckProvider.create(base);
        expect(r.id).toBe(`${APP}-rotation-check-${leaf.serial}`);
        expect(r.outs).toMatchObject({
            leafSerial: leaf.serial,
            previousLeafSerial: "",
            leafNotAfter: leaf.notAfter.toISOString(),
            tokenPolicies: ["default", `${APP}-issue`, `${APP}-marker`],
            agentSerial: parseCertificate(base.agentCertPem).serial,
        });
        expect(leaf.subjectCN).toBe("prov-rc.internal");
        expect(leaf.issuerCN).toBe("Prod Intermediate CA");
    });

    it("fails for a wrong expected CN", async () => {
        expect(await failureLines({ leafCommonName: "other.internal" })).toEqual([`${APP}: leaf CN: expected other.internal, found prov-rc.internal`]);
    });

    it("fails for SANs outside the allowed domains", async () => {
        expect(await failureLines({ allowedDomains: ["prov-rc.internal"] })).toEqual([
            `${APP}: leaf SANs: expected DNS names within [prov-rc.internal], found [prov-rc.prov.example.com] outside them`,
        ]);
    });

    it("fails for a leaf from a foreign CA (issuer name and signature)", async () => {
        const ca = pki.rootCa("Foreign CA");
        const leaf = pki.issue({ issuer: ca, commonName: "prov-rc.internal", dnsNames: ["prov-rc.internal"] });
        expect(await failureLines({ hostState: hostState(leaf.certPem + ca.certPem) })).toEqual([
            `${APP}: issuer CN: expected Prod Intermediate CA, found Foreign CA`,
            `${APP}: chain: expected a leaf signed by the issuing CA of pki_int (CN=Prod Intermediate CA), found a leaf it did not sign (its issuer CN is "Foreign CA")`,
        ]);
    });

    it("fails for a leaf from an impostor CA with the expected name (signature only)", async () => {
        const impostor = pki.rootCa("Prod Intermediate CA");
        const leaf = pki.issue({ issuer: impostor, commonName: "prov-rc.internal", dnsNames: ["prov-rc.internal"] });
        expect(await failureLines({ hostState: hostState(leaf.certPem) })).toEqual([
            `${APP}: chain: expected a leaf signed by the issuing CA of pki_int (CN=Prod Intermediate CA), found a leaf it did not sign (its issuer CN is "Prod Intermediate CA")`,
        ]);
    });

    it("fails for the real leaf once it has expired, and before it is valid", async () => {
        const leaf = leafOf(fullchain);
        const validity = (now: Date) =>
            `${APP}: validity: expected notBefore <= ${now.toISOString()} < notAfter, found notBefore ${leaf.notBefore.toISOString()}, notAfter ${leaf.notAfter.toISOString()}`;
        const expired = new Date(leaf.notAfter.getTime() + 1000);
        expect(await failureLines({}, expired)).toEqual([validity(expired)]);
        const early = new Date(leaf.notBefore.getTime() - 1000);
        expect(await failureLines({}, early)).toEqual([validity(early)]);
        // notAfter itself is already too late.
        expect(await failureLines({}, leaf.notAfter)).toEqual([validity(leaf.notAfter)]);
    });

    it("fails for openssl-made leaves with explicit past and future validity", async () => {
        const ca = pki.rootCa("Prod Intermediate CA");
        const day = 86_400_000;
        for (const [notBefore, notAfter] of [
            [new Date(NOW.getTime() - 3 * day), new Date(NOW.getTime() - day)],
            [new Date(NOW.getTime() + day), new Date(NOW.getTime() + 3 * day)],
        ]) {
            const leaf = pki.issue({ issuer: ca, commonName: "prov-rc.internal", dnsNames: ["prov-rc.internal"], notBefore, notAfter });
            const parsed = new X509Certificate(leaf.certPem);
            const lines = await failureLines({ hostState: hostState(leaf.certPem) });
            expect(lines).toContain(
                `${APP}: validity: expected notBefore <= ${NOW.toISOString()} < notAfter, found notBefore ${new Date(parsed.validFrom).toISOString()}, notAfter ${new Date(parsed.validTo).toISOString()}`,
            );
            // Not also reported as "too little remaining": that is only for a leaf valid now.
            expect(lines.filter((l) => l.includes("remaining validity"))).toEqual([]);
        }
    });

    it("fails when less validity remains than the floor", async () => {
        const lines = await failureLines({ minRemainingSeconds: 73 * 3600 });
        expect(lines).toEqual([expect.stringMatching(new RegExp(`^${APP}: remaining validity: expected at least 262800s, found \\d+s \\(notAfter ${leafOf(fullchain).notAfter.toISOString()}\\)$`))]);
    });

    it("fails when the serial did not change (the previous fullchain is the same cert)", async () => {
        const serial = leafOf(fullchain).serial;
        expect(await failureLines({ hostState: hostState(fullchain, fullchain) })).toEqual([
            `${APP}: serial changed: expected a serial other than the previous leaf's ${serial}, found the same serial ${serial}`,
        ]);
    });

    it("reports the previous serial when it did change", async () => {
        const older = (await root<{ data: { certificate: string; issuing_ca: string } }>("POST", "pki_int/issue/nginx-prov-rc", { common_name: "prov-rc.internal" })).data;
        const r = await runRotationCheck({ ...base, hostState: hostState(fullchain, older.certificate) });
        expect(r.previousLeafSerial).toBe(leafOf(older.certificate).serial);
        expect(r.leafSerial).not.toBe(r.previousLeafSerial);
    });

    it("the host's login on the applied stack carried exactly the mapping's policies", () => {
        expect(hostLogin).toBe(`policies=default,${APP}-issue,${APP}-marker`);
    });

    it("fails when the host's login failed: a mapping that does not exist", async () => {
        const agentKey = sandbox.agentFiles(APP).keyPem;
        const login = await loginLine("agent-prov-nope", base.agentCertPem, agentKey);
        expect(login).toMatch(/^error=Code: 400\. /);
        expect(await failureLines({ hostState: hostState(fullchain, "", "active", login) })).toEqual([
            `${APP}: cert login: expected a token from auth/${CERT_PATH}/login with name agent-${APP} on the host (as the app user, with the new agent files), found ${login.slice("error=".length)}`,
        ]);
    });

    it("fails when the host's login failed: a cert for the right CN that the mapping does not trust", async () => {
        const ca = pki.rootCa("Prod Intermediate CA");
        const agent = pki.issue({ issuer: ca, commonName: "agent-prov-rc.prov.internal", dnsNames: ["agent-prov-rc.prov.internal"], usage: ["clientAuth"] });
        const login = await loginLine(`agent-${APP}`, agent.certPem, agent.keyPem);
        expect(login).toMatch(/^error=Code: 400\. /);
        expect(await failureLines({ hostState: hostState(fullchain, "", "active", login) })).toEqual([expect.stringMatching(new RegExp(`^${APP}: cert login: expected .+, found Code: 400\\. `))]);
    });

    it("fails for a wrong expected policy set, naming the extra and the missing policies", async () => {
        expect(await failureLines({ expectedPolicies: ["default", `${APP}-issue`] })).toEqual([
            `${APP}: token policies: expected [default, ${APP}-issue], found [default, ${APP}-issue, ${APP}-marker] (extra [${APP}-marker])`,
        ]);
        expect(await failureLines({ expectedPolicies: ["debug-policy", "default", `${APP}-issue`, `${APP}-marker`] })).toEqual([
            `${APP}: token policies: expected [debug-policy, default, ${APP}-issue, ${APP}-marker], found [default, ${APP}-issue, ${APP}-marker] (missing [debug-policy])`,
        ]);
    });

    it("fails for an agent service that is not active, and for a missing fullchain", async () => {
        expect(await failureLines({ hostState: hostState(fullchain, "", "failed") })).toEqual([`${APP}: agent service: expected active, found "failed"`]);
        expect(await failureLines({ hostState: hostState("") })).toEqual([
            `${APP}: fullchain present: expected a fullchain whose first CERTIFICATE block is the leaf, found no fullchain file or an empty one`,
        ]);
    });

    it("reports every failed item in one error", async () => {
        const lines = await failureLines({ leafCommonName: "other.internal", hostState: hostState(fullchain, fullchain, "inactive", "error=Code: 400. Errors: invalid certificate") });
        expect(lines.map((l) => l.split(":").slice(0, 2).join(":"))).toEqual([`${APP}: cert login`, `${APP}: leaf CN`, `${APP}: serial changed`, `${APP}: agent service`]);
    });
});

// ---------------------------------------------------------------------------------------------

describe("version drift (RotationCheck's warning), against the real server", () => {
    const version = process.env.VAULT_ROTATION_TEST_VERSION!;
    const drift = (agentVersionText: string) => measureVersions(connection, "prov-vd", agentVersionText);

    it("reads the server's version: the binary's", async () => {
        expect(version).toMatch(/^\d+\.\d+\.\d+/);
        expect((await readServerVersion(connection))?.text).toBe(version);
    });

    it("no warning when the agent on the host runs the same version (real `vault version` text)", async () => {
        const agentText = execFileSync(vault.vaultBin, ["version"]).toString().split("\n")[0];
        expect(await drift(agentText)).toEqual({ serverVersion: version, agentVersion: version, versionMismatch: false, agentAhead: false, versionWarning: "" });
    });

    it("a warning naming both versions when they differ", async () => {
        const r = await drift("Vault v1.20.4 (deadbeef), built 2025-09-01T00:00:00Z");
        expect(r).toMatchObject({ serverVersion: version, agentVersion: "1.20.4", versionMismatch: true });
        expect(r.versionWarning).toContain("prov-vd: Vault Agent 1.20.4");
        expect(r.versionWarning).toContain(`Vault server ${version}`);
    });

    it("an agent a minor version ahead is called out", async () => {
        const [major, minor] = version.split(".").map(Number);
        const ahead = `${major}.${minor + 1}.0`;
        const r = await drift(`Vault v${ahead} (cafe), built 2026-01-01T00:00:00Z`);
        expect(r).toMatchObject({ agentVersion: ahead, versionMismatch: true, agentAhead: true });
        expect(r.versionWarning).toMatch(new RegExp(`Vault Agent ${ahead.replace(/\./g, "\\.")} is a minor version or more AHEAD of the Vault server ${version.replace(/\./g, "\\.")}`));
    });
});

// ---------------------------------------------------------------------------------------------

describe("CertRevocation, against the real PKI and cert auth", () => {
    const CERT_PATH = "cert-prov-revoke";
    const CN = "agent-prov-rev.prov.internal";
    let dir: string;

    beforeAll(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-prov-rev-"));
        // A role and a mapping like the program's, on a cert auth mount of this test's own.
        await root("POST", "pki_int/roles/agent-prov-rev", {
            allowed_domains: [CN], allow_bare_domains: true, allow_subdomains: false, client_flag: true, server_flag: false, key_type: "ec", key_bits: 256, ttl: "1h", max_ttl: "1h",
        });
        await root("POST", `sys/auth/${CERT_PATH}`, { type: "cert" });
        const ca = (await root<{ data: { certificate: string } }>("GET", "pki_int/cert/ca")).data.certificate;
        await root("POST", `auth/${CERT_PATH}/certs/agent-prov-rev`, { certificate: ca, allowed_common_names: [CN], token_policies: ["default"], token_ttl: 60 });
    });

    afterAll(() => {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    /** A key and a cert signed under the role, as the program makes them. */
    async function agentCert(): Promise<{ certPem: string; keyPem: string; serial: string }> {
        const keyFile = path.join(dir, `key-${Date.now()}-${Math.random()}.pem`);
        const csr = execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-subj", `/CN=${CN}`], { stdio: ["ignore", "pipe", "pipe"] }).toString();
        const signed = (await root<{ data: { certificate: string; serial_number: string } }>("POST", "pki_int/sign/agent-prov-rev", { csr, common_name: CN })).data;
        return { certPem: signed.certificate, keyPem: fs.readFileSync(keyFile, "utf8"), serial: signed.serial_number };
    }
    const login = (c: { certPem: string; keyPem: string }) =>
        vaultRequest(vault, "POST", `auth/${CERT_PATH}/login`, { name: "agent-prov-rev" }, { token: null, clientCertPem: c.certPem, clientKeyPem: c.keyPem });
    const revokedAt = async (serial: string) => (await root<{ data: { revocation_time: number } }>("GET", `pki_int/cert/${serial}`)).data.revocation_time;

    it("records without revoking; delete revokes and makes cert auth refuse the cert", async () => {
        const cert = await agentCert();
        const plainHex = cert.serial.replace(/:/g, "").toUpperCase();
        const checked = await certRevocationProvider.check!({} as CertRevocationInputs, { connection, pkiMount: "pki_int", serialNumber: plainHex, certAuthPath: CERT_PATH });
        expect(checked.failures).toEqual([]);
        expect(checked.inputs?.serialNumber).toBe(cert.serial);

        const created = await certRevocationProvider.create(checked.inputs as CertRevocationInputs);
        expect(created.id).toBe(`pki_int:${cert.serial}`);
        expect(await revokedAt(cert.serial)).toBe(0);
        expect((await login(cert)).status).toBe(200);

        const successor = await agentCert();
        await certRevocationProvider.delete!(created.id, created.outs!);
        expect(await revokedAt(cert.serial)).toBeGreaterThan(0);
        expect((await login(cert)).status).toBe(400);
        // The successor is untouched.
        expect(await revokedAt(successor.serial)).toBe(0);
        expect((await login(successor)).status).toBe(200);

        // Deleting again (a retried destroy) is not an error.
        await expect(certRevocationProvider.delete!(created.id, created.outs!)).resolves.toBeUndefined();
    });

    it("a serial Vault no longer knows is nothing to revoke; a mount that is not a PKI fails loudly", async () => {
        // Tidy removes only expired certs from the store: "not found" means nothing left to revoke.
        await expect(certRevocationProvider.delete!("x", { connection, pkiMount: "pki_int", serialNumber: "7f:00:00:00:00:00:00:01" })).resolves.toBeUndefined();
        await expect(certRevocationProvider.delete!("x", { connection, pkiMount: "prov-no-such-pki", serialNumber: "7f:01" })).rejects.toThrow(/prov-no-such-pki\/revoke: 404/);
    });
});
