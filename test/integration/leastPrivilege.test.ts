// The least-privilege matrix against real Vault: a three-app local stack of this
// file's own is applied for real (Vault objects, host files, real agents), then
// each app's agent logs in with its own mTLS cert and probes what its token can
// and cannot do. The PKI roles are checked for what they can produce (key usage),
// and a rotation must revoke the replaced agent cert for cert auth too.
import { execFileSync } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { applyProgram, ApplierState, ApplyResult } from "../support/applier";
import { flattenConfig, withEpoch } from "../support/harness";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { testVaultFromEnv, vaultRequest, VaultResponse } from "../support/vaultAdmin";

const vault = testVaultFromEnv();

// Its own cert auth mount: this file's mappings and CRL never meet another file's.
const CERT_PATH = "cert-lp";
const PKI = "pki_int";
const KV = "secret";
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

interface AppSpec {
    name: string;
    agentCn: string;
    domains: string[];
    kv: boolean;
    seed: boolean;
    marker: boolean;
}

const APPS: AppSpec[] = [
    { name: "lp-a", agentCn: "agent-lp-a.lp.internal", domains: ["lp-a.internal", "lp-a.lp.example.com"], kv: true, seed: true, marker: true },
    { name: "lp-b", agentCn: "agent-lp-b.lp.internal", domains: ["lp-b.internal", "lp-b.lp.example.com"], kv: true, seed: false, marker: true },
    { name: "lp-c", agentCn: "agent-lp-c.lp.internal", domains: ["lp-c.internal"], kv: false, seed: false, marker: false },
];
const spec = (name: string): AppSpec => APPS.find((a) => a.name === name)!;
/** What the operators of lp-b put there before the program ever ran. */
const LP_B_DATA = { owner: "team-b", note: "written before the first run" };

/** The policies each mapping must attach (Vault adds `default` at login). */
function expectedMappingPolicies(a: AppSpec): string[] {
    return [`${a.name}-issue`, ...(a.marker ? [`${a.name}-marker`] : []), ...(a.kv ? [`${a.name}-kv`] : [])].sort();
}

function stackConfig(): Record<string, string> {
    return flattenConfig({
        "vault:address": vault.address,
        "vault:caCertFile": vault.caCertFile,
        "vault-rotation:rotation": { epoch: "lp-1", runInterval: "4h", leafMinRemaining: "1h", waitSeconds: 60 },
        "vault-rotation:vault": { pkiMount: PKI, issuerCommonName: "Prod Intermediate CA", certAuthPath: CERT_PATH, kvMount: KV },
        "vault-rotation:kvSeedData": { "lp-a": { owner: "team-a" } },
        "vault-rotation:apps": APPS.map((a) => ({
            name: a.name,
            user: a.name,
            home: `/home/${a.name}`,
            host: { local: true },
            agent: { commonName: a.agentCn, ttl: "24h", markerPolicy: a.marker },
            leaf: { commonName: a.domains[0], altNames: a.domains.slice(1), allowedDomains: a.domains, ttl: "72h" },
            kv: { access: a.kv, seed: a.seed },
            reload: { label: "tls=true", proxy: "podman:edge-proxy" },
        })),
    });
}

/** The outputs of the resource named `name` in the applier's state. */
function outputsOf(state: ApplierState, name: string): Record<string, unknown> {
    const entries = Object.values(state.resources).filter((e) => e.name === name);
    if (entries.length !== 1) throw new Error(`expected one resource named ${name} in the state, found ${entries.length}`);
    return entries[0].outputs;
}

interface AgentCredentials {
    certPem: string;
    keyPem: string;
    serial: string;
}

function agentCredentials(state: ApplierState, app: string): AgentCredentials {
    const cert = outputsOf(state, `${app}-agent-cert`);
    // The key exists only on the host (generated there); the cert in state is the one installed beside it.
    return { certPem: String(cert.certificate), keyPem: sandbox.agentFiles(app).keyPem, serial: String(cert.serialNumber) };
}

interface LoginBody {
    auth?: { client_token: string; policies: string[]; token_policies: string[] };
    errors?: string[];
}

function certLogin(app: string, creds: Pick<AgentCredentials, "certPem" | "keyPem">): Promise<VaultResponse<LoginBody>> {
    return vaultRequest<LoginBody>(vault, "POST", `auth/${CERT_PATH}/login`, { name: `agent-${app}` }, { token: null, clientCertPem: creds.certPem, clientKeyPem: creds.keyPem });
}

/** Extended key usage OIDs of a certificate (Node 20 lists them as `keyUsage`). */
function extKeyUsage(pem: string): string[] {
    const cert = new X509Certificate(pem) as X509Certificate & { extKeyUsage?: string[] };
    return [...(cert.extKeyUsage ?? cert.keyUsage ?? [])].sort();
}

/** The "X509v3 Extended Key Usage" line of `openssl x509 -text`. */
function opensslExtKeyUsage(pem: string): string {
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], { input: pem }).toString();
    const m = /X509v3 Extended Key Usage:.*\n\s*(.+)\n/.exec(text);
    return m ? m[1].trim() : "(none)";
}

let sandbox: Sandbox;
let first: ApplyResult;
const tokens: Record<string, string> = {};

beforeAll(async () => {
    // lp-b's secret exists before the first run: the program must find it and leave it alone.
    const pre = await vaultRequest(vault, "POST", `${KV}/data/apps/lp-b`, { data: LP_B_DATA });
    if (pre.status !== 200) throw new Error(`seeding lp-b with the root token: ${pre.status} ${pre.text}`);
    // lp-c has no KV access: a secret of its own must still be out of its reach.
    await vaultRequest(vault, "POST", `${KV}/data/apps/lp-c`, { data: { owner: "team-c" } });

    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-lp-"));
    sandbox = prepareSandbox({ root, config: stackConfig(), vault });
    first = await applyProgram({ config: sandbox.config, vault, stack: "lp", log: () => undefined });
    for (const a of APPS) {
        const res = await certLogin(a.name, agentCredentials(first.state, a.name));
        if (res.status !== 200 || !res.body.auth) throw new Error(`${a.name}: cert login after the first apply: ${res.status} ${res.text}`);
        tokens[a.name] = res.body.auth.client_token;
    }
}, 240_000);

afterAll(async () => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
    for (const token of Object.values(tokens)) {
        await vaultRequest(vault, "POST", "auth/token/revoke-self", undefined, { token });
    }
});

/** A request made with app X's login token. */
function as(app: string, method: string, apiPath: string, body?: unknown): Promise<VaultResponse> {
    return vaultRequest(vault, method, apiPath, body, { token: tokens[app] });
}

const others = (app: string) => APPS.filter((a) => a.name !== app).map((a) => a.name);
const names = APPS.map((a) => a.name);

it("reports the KV state it found: lp-a seeded, lp-b existed (not overwritten), lp-c disabled", async () => {
    const apps = first.evaluation.exports.apps as Record<string, { kvStatus: string }>;
    expect(Object.fromEntries(names.map((n) => [n, apps[n].kvStatus]))).toEqual({ "lp-a": "seeded", "lp-b": "existed", "lp-c": "disabled" });
    const b = await vaultRequest<{ data: { data: Record<string, string>; metadata: { version: number } } }>(vault, "GET", `${KV}/data/apps/lp-b`);
    expect(b.body.data.data).toEqual(LP_B_DATA);
    expect(b.body.data.metadata.version).toBe(1);
});

describe.each(names)("a cert login of %s", (app) => {
    const a = spec(app);

    it("carries exactly default + the mapping's policies, and the mapping exactly the app's", async () => {
        const mapping = await vaultRequest<{ data: { token_policies: string[]; allowed_common_names: string[] } }>(vault, "GET", `auth/${CERT_PATH}/certs/agent-${app}`);
        expect(mapping.status).toBe(200);
        expect([...mapping.body.data.token_policies].sort()).toEqual(expectedMappingPolicies(a));
        expect(mapping.body.data.allowed_common_names).toEqual([a.agentCn]);

        const login = await certLogin(app, agentCredentials(first.state, app));
        expect(login.status).toBe(200);
        expect([...login.body.auth!.policies].sort()).toEqual(["default", ...mapping.body.data.token_policies].sort());
        await vaultRequest(vault, "POST", "auth/token/revoke-self", undefined, { token: login.body.auth!.client_token });
        const self = await as(app, "GET", "auth/token/lookup-self");
        expect(((self.body.data as { policies: string[] }).policies ?? []).slice().sort()).toEqual(["default", ...expectedMappingPolicies(a)].sort());
    });

    it.each(a.domains)("CAN issue from nginx-" + app + " for its allowed domain %s", async (domain) => {
        const res = await as(app, "POST", `${PKI}/issue/nginx-${app}`, { common_name: domain });
        expect(res.status).toBe(200);
        const cert = new X509Certificate((res.body.data as { certificate: string }).certificate);
        expect(cert.subject).toBe(`CN=${domain}`);
        expect(extKeyUsage(cert.toString())).toEqual([SERVER_AUTH]);
    });

    it("CANNOT issue from another app's nginx role, not even for that app's own domain", async () => {
        for (const other of others(app)) {
            const res = await as(app, "POST", `${PKI}/issue/nginx-${other}`, { common_name: spec(other).domains[0] });
            expect({ role: `nginx-${other}`, status: res.status }).toEqual({ role: `nginx-${other}`, status: 403 });
        }
    });

    it("CANNOT issue under its own role for a name outside its list, a wildcard, an IP SAN or localhost", async () => {
        const own = a.domains[0];
        const attempts: Record<string, Record<string, unknown>> = {
            "another app's domain": { common_name: spec(others(app)[0]).domains[0] },
            "a subdomain of its domain": { common_name: `www.${own}` },
            "an unrelated domain": { common_name: "evil.example.org" },
            "an allowed CN with a foreign alt name": { common_name: own, alt_names: "evil.example.org" },
            "a wildcard CN": { common_name: `*.${own}` },
            "a wildcard alt name": { common_name: own, alt_names: `*.${own}` },
            "an IP SAN": { common_name: own, ip_sans: "127.0.0.1" },
            "localhost as CN": { common_name: "localhost" },
            "localhost as alt name": { common_name: own, alt_names: "localhost" },
            "a URI SAN": { common_name: own, uri_sans: "spiffe://evil/x" },
        };
        const outcomes: Record<string, number> = {};
        for (const [what, body] of Object.entries(attempts)) {
            outcomes[what] = (await as(app, "POST", `${PKI}/issue/nginx-${app}`, body)).status;
        }
        // 400: the role refuses the request (the policy let it through to the role).
        expect(outcomes).toEqual(Object.fromEntries(Object.keys(attempts).map((k) => [k, 400])));
    });

    it("CANNOT use the agent role (issue or sign) nor any other PKI endpoint that mints certs", async () => {
        const csr = makeCsr(a.agentCn);
        const outcomes = {
            issueAgent: (await as(app, "POST", `${PKI}/issue/agent-${app}`, { common_name: a.agentCn })).status,
            signAgent: (await as(app, "POST", `${PKI}/sign/agent-${app}`, { csr, common_name: a.agentCn })).status,
            signNginx: (await as(app, "POST", `${PKI}/sign/nginx-${app}`, { csr: makeCsr(a.domains[0]), common_name: a.domains[0] })).status,
            signVerbatim: (await as(app, "POST", `${PKI}/sign-verbatim`, { csr })).status,
            rootIssue: (await as(app, "POST", `pki/issue/nginx-${app}`, { common_name: a.domains[0] })).status,
            revoke: (await as(app, "POST", `${PKI}/revoke`, { serial_number: agentCredentials(first.state, app).serial })).status,
        };
        expect(outcomes).toEqual({ issueAgent: 403, signAgent: 403, signNginx: 403, signVerbatim: 403, rootIssue: 403, revoke: 403 });
    });

    it("reads only its own KV secret, and only with KV access", async () => {
        for (const other of others(app)) {
            const res = await as(app, "GET", `${KV}/data/apps/${other}`);
            expect({ path: `apps/${other}`, status: res.status }).toEqual({ path: `apps/${other}`, status: 403 });
        }
        const own = await as(app, "GET", `${KV}/data/apps/${app}`);
        if (a.kv) {
            expect(own.status).toBe(200);
            expect((own.body.data as { data: Record<string, string> }).data).toEqual(app === "lp-a" ? { owner: "team-a" } : LP_B_DATA);
            // Read-only: not even its own secret may be changed by the agent.
            expect((await as(app, "POST", `${KV}/data/apps/${app}`, { data: { owner: "agent" } })).status).toBe(403);
            // Its subtree is readable, a sibling with its name as prefix is not.
            expect((await as(app, "GET", `${KV}/data/apps/${app}-other`)).status).toBe(403);
        } else {
            expect(own.status).toBe(403);
        }
    });

    it("CANNOT change policies, mounts or auth methods", async () => {
        const outcomes = {
            policy: (await as(app, "PUT", "sys/policies/acl/x", { policy: 'path "*" { capabilities = ["sudo"] }' })).status,
            mount: (await as(app, "POST", "sys/mounts/x", { type: "kv" })).status,
            auth: (await as(app, "POST", "sys/auth/x", { type: "userpass" })).status,
            ownMapping: (await as(app, "POST", `auth/${CERT_PATH}/certs/agent-${app}`, { token_policies: "root" })).status,
            ownRole: (await as(app, "POST", `${PKI}/roles/nginx-${app}`, { allow_any_name: true })).status,
        };
        expect(outcomes).toEqual({ policy: 403, mount: 403, auth: 403, ownMapping: 403, ownRole: 403 });
    });
});

/** A CSR for `cn` (and `san` as a DNS name, if given), P-256 unless `newkey` says otherwise; the key is thrown away with the temp dir. */
function makeCsr(cn: string, san?: string, newkey = "ec"): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-lp-csr-"));
    try {
        return execFileSync("openssl", [
            "req", "-new", "-newkey", newkey, ...(newkey === "ec" ? ["-pkeyopt", "ec_paramgen_curve:P-256"] : []), "-nodes",
            "-keyout", path.join(dir, "key.pem"), "-subj", `/CN=${cn}`,
            ...(san === undefined ? [] : ["-addext", `subjectAltName=DNS:${san}`]),
        ], { stdio: ["ignore", "pipe", "pipe"] }).toString();
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

describe("what the roles can produce (root token)", () => {
    it.each(names)("nginx-%s certificates are TLS server certificates only", async (app) => {
        const res = await vaultRequest<{ data: { certificate: string } }>(vault, "POST", `${PKI}/issue/nginx-${app}`, { common_name: spec(app).domains[0] });
        expect(res.status).toBe(200);
        expect(extKeyUsage(res.body.data.certificate)).toEqual([SERVER_AUTH]);
        expect(opensslExtKeyUsage(res.body.data.certificate)).toBe("TLS Web Server Authentication");
    });

    it.each(names)("agent-%s certificates are TLS client certificates only, and only for the agent's CN", async (app) => {
        const a = spec(app);
        const signed = await vaultRequest<{ data: { certificate: string } }>(vault, "POST", `${PKI}/sign/agent-${app}`, { csr: makeCsr(a.agentCn), common_name: a.agentCn });
        expect(signed.status).toBe(200);
        expect(extKeyUsage(signed.body.data.certificate)).toEqual([CLIENT_AUTH]);
        expect(opensslExtKeyUsage(signed.body.data.certificate)).toBe("TLS Web Client Authentication");
        // The cert the program issued for the agent says the same.
        expect(opensslExtKeyUsage(agentCredentials(first.state, app).certPem)).toBe("TLS Web Client Authentication");
        // Even the root token cannot make the agent role sign for a server name.
        const forServer = await vaultRequest(vault, "POST", `${PKI}/sign/agent-${app}`, { csr: makeCsr(a.domains[0]), common_name: a.domains[0] });
        expect(forServer.status).toBe(400);
    });

    it.each(names)("a CSR from %s's host names nothing: the cert carries the agent CN only, whatever the CSR asks for", async (app) => {
        // The CSR is whatever the host prints (a compromised app user controls it); the program
        // passes the agent's CN, and the role takes names from the request only (use_csr_* off).
        const a = spec(app);
        const other = spec(names.find((n) => n !== app)!);
        for (const csr of [makeCsr(other.agentCn), makeCsr(a.agentCn, other.agentCn), makeCsr(a.agentCn, a.domains[0])]) {
            const res = await vaultRequest<{ data: { certificate: string } }>(vault, "POST", `${PKI}/sign/agent-${app}`, { csr, common_name: a.agentCn });
            expect(res.status).toBe(200);
            const cert = new X509Certificate(res.body.data.certificate);
            // The OU is the stack's mark for the agent (its mapping requires it), not the CSR's.
            expect([cert.subject, cert.subjectAltName]).toEqual([`OU=vault-rotation agent-${app}\nCN=${a.agentCn}`, `DNS:${a.agentCn}`]);
        }
        // The key type is the role's: an RSA key is refused.
        const rsa = await vaultRequest(vault, "POST", `${PKI}/sign/agent-${app}`, { csr: makeCsr(a.agentCn, undefined, "rsa:2048"), common_name: a.agentCn });
        expect(rsa.status).toBe(400);
    });

    it("a server certificate from nginx-lp-a cannot log in as any agent", async () => {
        const leaf = await vaultRequest<{ data: { certificate: string; private_key: string } }>(vault, "POST", `${PKI}/issue/nginx-lp-a`, { common_name: "lp-a.internal" });
        const res = await certLogin("lp-a", { certPem: leaf.body.data.certificate, keyPem: leaf.body.data.private_key });
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.body.auth).toBeUndefined();
    });

    it("one app's agent cert cannot log in through another app's mapping", async () => {
        const res = await certLogin("lp-b", agentCredentials(first.state, "lp-a"));
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.body.auth).toBeUndefined();
    });
});

describe("after a rotation (new epoch)", () => {
    let rotated: ApplyResult;
    /** Each agent's credentials before the rotation (the host's key file is replaced by it). */
    const before: Record<string, AgentCredentials> = {};

    beforeAll(async () => {
        for (const app of names) before[app] = agentCredentials(first.state, app);
        rotated = await applyProgram({ config: withEpoch(sandbox.config, "lp-2"), state: first.state, vault, stack: "lp", log: () => undefined });
    }, 240_000);

    it.each(names)("%s: the replaced agent cert is revoked and no longer logs in; the new one does", async (app) => {
        const old = before[app];
        const fresh = agentCredentials(rotated.state, app);
        expect(fresh.serial).not.toBe(old.serial);

        const record = await vaultRequest<{ data: { revocation_time: number } }>(vault, "GET", `${PKI}/cert/${old.serial}`);
        expect(record.status).toBe(200);
        expect(record.body.data.revocation_time).toBeGreaterThan(0);
        const current = await vaultRequest<{ data: { revocation_time: number } }>(vault, "GET", `${PKI}/cert/${fresh.serial}`);
        expect(current.body.data.revocation_time).toBe(0);

        const oldLogin = await certLogin(app, old);
        // Cert auth knows of the revocation only through the CRL the program gives it.
        expect({ status: oldLogin.status, errors: oldLogin.body.errors, token: oldLogin.body.auth?.client_token }).toEqual({
            status: 400,
            errors: ["failed to match all constraints for this login certificate"],
            token: undefined,
        });

        const newLogin = await certLogin(app, fresh);
        expect(newLogin.status).toBe(200);
        expect([...newLogin.body.auth!.policies].sort()).toEqual(["default", ...expectedMappingPolicies(spec(app))].sort());
        await vaultRequest(vault, "POST", "auth/token/revoke-self", undefined, { token: newLogin.body.auth!.client_token });

        // The host holds the new credentials.
        expect(sandbox.agentFiles(app).certPem.trim()).toBe(fresh.certPem.trim());
    });
});
