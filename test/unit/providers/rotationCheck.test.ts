import { parseCertificate } from "../../../providers/pem";
import { parseHostState } from "../../../lib/hostState";
import {
    checkAgentService,
    checkLogin,
    checkPolicies,
    failureLine,
    rotationCheckProvider as provider,
    runRotationCheck,
    type RotationCheckInputs,
    type RotationCheckOutputs,
    storedHostState,
} from "../../../providers/rotationCheck";
import { UNKNOWN_INPUT } from "../../../providers/vaultClient";
import { sha256Hex } from "../../../lib/digest";
import { routes, startFakeVault, type Handler, type Reply, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki, type TestCert } from "../../support/tls";

const ADMIN_TOKEN = "hvs.admin-token-never-needed-here";
const EXPECTED_POLICIES = ["app-a-issue", "app-a-marker", "default"];
const DAY = 86400_000;

let pki: TestPki;
let server: TestHttpsServer;
let base: RotationCheckInputs;
const certs: Record<string, TestCert> = {};
const savedToken = process.env.VAULT_TOKEN;

const LOGIN_OK = `policies=${EXPECTED_POLICIES.join(",")}`;

function hostState(o: { fullchain?: string; previous?: string; reload?: string; service?: string; login?: string | null; agentVersion?: string }): string {
    // The layout renderReadHostStateScript prints; `### login` is the host's cert login as the app user.
    const login = o.login === null ? [] : ["### login", o.login ?? LOGIN_OK];
    return [
        "### fullchain", o.fullchain ?? "",
        "### previous", o.previous ?? "",
        "### reload", o.reload ?? "result=ok reloaded=app-a-web failed=",
        "### service", o.service ?? "active",
        ...login,
        "### agent-version", o.agentVersion ?? "Vault v1.21.1",
        "### end", "",
    ].join("\n");
}

/** A fullchain as the agent renders it: leaf, then the issuing CA. */
const fullchainOf = (leaf: TestCert) => `${leaf.certPem}${certs.intermediate.certPem}`;

function vaultRoutes(overrides: Record<string, Reply | Handler> = {}): Handler {
    return routes({
        "GET pki_int/cert/ca": { json: { data: { certificate: certs.intermediate.certPem } } },
        "GET sys/health": { json: { version: "1.21.1" } },
        ...overrides,
    });
}

beforeAll(async () => {
    process.env.VAULT_TOKEN = ADMIN_TOKEN;
    pki = TestPki.create();
    const now = Date.now();
    const root = pki.rootCa("Prod Root CA");
    certs.intermediate = pki.issue({ issuer: root, commonName: "Prod Intermediate CA", isCA: true, days: 30 });
    // Same CN as the real intermediate, different key: only the signature check can tell.
    const foreignRoot = pki.rootCa("Other Root CA");
    certs.foreignIntermediate = pki.issue({ issuer: foreignRoot, commonName: "Prod Intermediate CA", isCA: true, days: 30 });
    certs.otherIntermediate = pki.issue({ issuer: foreignRoot, commonName: "Staging Intermediate CA", isCA: true, days: 30 });
    certs.agent = pki.issue({ issuer: certs.intermediate, commonName: "agent-a.prod.internal", dnsNames: ["agent-a.prod.internal"], usage: ["clientAuth"], days: 3 });

    const names = { commonName: "app-a.internal", dnsNames: ["app-a.internal", "app-a.prod.example.com"] };
    certs.leaf = pki.issue({ issuer: certs.intermediate, ...names, notBefore: new Date(now - 60_000), notAfter: new Date(now + 30 * DAY) });
    certs.previous = pki.issue({ issuer: certs.intermediate, ...names, days: 10 });
    certs.wrongCn = pki.issue({ issuer: certs.intermediate, commonName: "app-b.internal", dnsNames: ["app-a.internal"], days: 30 });
    certs.extraSan = pki.issue({ issuer: certs.intermediate, commonName: "app-a.internal", dnsNames: ["app-a.internal", "evil.example.com"], days: 30 });
    // No authority key id either, so names alone match the real intermediate.
    certs.foreign = pki.issue({ issuer: certs.foreignIntermediate, ...names, days: 30, authorityKeyId: false });
    certs.otherIssuer = pki.issue({ issuer: certs.otherIntermediate, ...names, days: 30 });
    certs.expired = pki.issue({ issuer: certs.intermediate, ...names, notBefore: new Date(now - 3 * DAY), notAfter: new Date(now - DAY) });
    certs.notYetValid = pki.issue({ issuer: certs.intermediate, ...names, notBefore: new Date(now + DAY), notAfter: new Date(now + 10 * DAY) });
    certs.short = pki.issue({ issuer: certs.intermediate, ...names, notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) });

    const vault = await startFakeVault(pki, { clientCaPem: `${certs.intermediate.certPem}${root.certPem}` });
    server = vault.server;
    base = {
        connection: vault.connection,
        app: "app-a",
        certAuthPath: "cert",
        mappingName: "agent-app-a",
        agentCertPem: certs.agent.certPem,
        expectedPolicies: EXPECTED_POLICIES,
        hostState: hostState({ fullchain: fullchainOf(certs.leaf), previous: fullchainOf(certs.previous) }),
        leafCommonName: "app-a.internal",
        allowedDomains: ["app-a.internal", "app-a.prod.example.com"],
        issuerCommonName: "Prod Intermediate CA",
        pkiMount: "pki_int",
        minRemainingSeconds: 86400,
    };
});

afterAll(async () => {
    process.env.VAULT_TOKEN = savedToken;
    await server.close();
    pki.cleanup();
});

beforeEach(() => {
    server.requests.length = 0;
    server.setHandler(vaultRoutes());
});

/** Runs the provider's create and returns the failure lines of its error (the indented ones). */
async function failureLines(inputs: RotationCheckInputs): Promise<string[]> {
    const err = await provider.create(inputs).then(
        () => undefined,
        (e: unknown) => e as Error,
    );
    if (!err) throw new Error("expected the rotation check to fail");
    expect(err.message).not.toContain(ADMIN_TOKEN);
    expect(err.message).not.toContain("PRIVATE KEY");
    return err.message
        .split("\n")
        .filter((l) => l.startsWith("  "))
        .map((l) => l.trim());
}

const withLeaf = (leaf: TestCert, extra: Partial<RotationCheckInputs> = {}): RotationCheckInputs => ({
    ...base,
    hostState: hostState({ fullchain: fullchainOf(leaf), previous: fullchainOf(certs.previous) }),
    ...extra,
});

describe("a good rotation", () => {
    test("passes and reports serials, expiry and policies", async () => {
        const res = await provider.create(base);
        const leaf = parseCertificate(certs.leaf.certPem);
        expect(res.id).toBe(`app-a-rotation-check-${leaf.serial}`);
        expect(res.outs).toEqual({
            ...storedHostState(base),
            agentSerial: parseCertificate(certs.agent.certPem).serial,
            leafSerial: leaf.serial,
            leafNotAfter: leaf.notAfter.toISOString(),
            leafDaysLeft: 30,
            previousLeafSerial: parseCertificate(certs.previous.certPem).serial,
            revokedReplacedAgentCert: "",
            replacedAgentCertNote: "",
            tokenPolicies: EXPECTED_POLICIES,
            servedSerial: "",
            servedVia: "not checked (no serve.endpoint)",
            checkedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
            serverVersion: "1.21.1",
            agentVersion: "1.21.1",
            versionMismatch: false,
            agentAhead: false,
            versionWarning: "",
        });
    });

    test("takes the login verdict from the host and never logs in or uses a token itself", async () => {
        await provider.create(base);
        expect(server.requests.map((r) => `${r.method} ${r.path}`).sort()).toEqual(["GET pki_int/cert/ca", "GET sys/health"]);
        expect(server.requests.filter((r) => r.headers["x-vault-token"] !== undefined)).toEqual([]);
    });

    test("the first rotation has no previous leaf to compare with", async () => {
        const res = await provider.create({ ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf) }) });
        expect(res.outs?.previousLeafSerial).toBe("");
    });

    test("falls back to <pki>/ca/pem for the issuing CA", async () => {
        server.setHandler(vaultRoutes({ "GET pki_int/cert/ca": { status: 404, json: { errors: [] } }, "GET pki_int/ca/pem": { text: certs.intermediate.certPem } }));
        await expect(provider.create(base)).resolves.toBeDefined();
        expect(server.requests.map((r) => r.path)).toContain("pki_int/ca/pem");
    });

    test("the host may list the policies in any order and with repeats", async () => {
        const res = await runRotationCheck({ ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf), login: "policies=default,app-a-marker,app-a-issue,default" }) });
        expect(res.tokenPolicies).toEqual(EXPECTED_POLICIES);
    });
});

describe("version drift: a warning, never a failure", () => {
    const withAgent = (agentVersion: string) => ({ ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf), agentVersion }) });

    test("an agent behind the server passes with a warning naming both versions", async () => {
        const res = await provider.create(withAgent("Vault v1.20.4 (deadbeef), built 2025-09-01T00:00:00Z"));
        expect(res.outs).toMatchObject({ serverVersion: "1.21.1", agentVersion: "1.20.4", versionMismatch: true, agentAhead: false });
        expect(res.outs?.versionWarning).toMatch(/^app-a: Vault Agent 1\.20\.4 differs from the Vault server 1\.21\.1; re-test/);
    });

    test("sys/health is read without a token, standbys included", async () => {
        await provider.create(base);
        const health = server.requests.find((r) => r.path === "sys/health");
        expect(health?.query).toEqual({ standbyok: "true" });
        expect(health?.headers["x-vault-token"]).toBeUndefined();
    });

    test("a server that cannot be asked is a warning; with an agent version unknown, nothing to say", async () => {
        server.setHandler(vaultRoutes({ "GET sys/health": { status: 500, json: { errors: ["internal error"] } } }));
        const res = await provider.create(base);
        expect(res.outs).toMatchObject({ serverVersion: "", agentVersion: "1.21.1", versionMismatch: false });
        expect(res.outs?.versionWarning).toMatch(/^app-a: the Vault server version could not be read \(Vault answered 500: internal error\); Vault Agent is 1\.21\.1$/);
        const unknown = await provider.create(withAgent(""));
        expect(unknown.outs).toMatchObject({ agentVersion: "", versionWarning: "" });
    });

    test("a failed check carries the version warning as a note after what to do, not as a failure line", async () => {
        const inputs = { ...withAgent("Vault v1.20.4"), hostState: hostState({ fullchain: fullchainOf(certs.leaf), service: "failed", agentVersion: "Vault v1.20.4" }) };
        const err = (await provider.create(inputs).catch((e: unknown) => e)) as Error;
        const lines = err.message.split("\n");
        expect(lines.filter((l) => l.startsWith("  ")).map((l) => l.trim())).toEqual(['app-a: agent service: expected active, found "failed"']);
        expect(lines[lines.length - 1]).toMatch(/^Also \(a warning, not a failure\): app-a: Vault Agent 1\.20\.4 differs/);
    });

    test("read (refresh) measures the server again and keeps the rotation's verdict", async () => {
        const created = await provider.create(base);
        server.setHandler(vaultRoutes({ "GET sys/health": { json: { version: "1.22.0" } } }));
        const read = await provider.read!(created.id, created.outs!);
        expect(read).toEqual({ id: created.id, props: { ...created.outs, serverVersion: "1.22.0", versionMismatch: true, versionWarning: expect.stringContaining("differs from the Vault server 1.22.0") as string } });
        expect(server.requests.filter((r) => r.path === "pki_int/cert/ca")).toHaveLength(1);
    });
});

describe("each failure is one precise line", () => {
    test("wrong leaf CN", async () => {
        expect(await failureLines(withLeaf(certs.wrongCn))).toEqual(["app-a: leaf CN: expected app-a.internal, found app-b.internal"]);
    });

    test("a SAN outside the allowed domains", async () => {
        expect(await failureLines(withLeaf(certs.extraSan))).toEqual([
            "app-a: leaf SANs: expected DNS names within [app-a.internal, app-a.prod.example.com], found [evil.example.com] outside them",
        ]);
    });

    test("foreign issuer with the expected CN: only the signature check catches it", async () => {
        expect(await failureLines(withLeaf(certs.foreign))).toEqual([
            'app-a: chain: expected a leaf signed by the issuing CA of pki_int (CN=Prod Intermediate CA), found a leaf it did not sign (its issuer CN is "Prod Intermediate CA")',
        ]);
    });

    test("another issuer: issuer CN and chain both fail", async () => {
        expect(await failureLines(withLeaf(certs.otherIssuer))).toEqual([
            "app-a: issuer CN: expected Prod Intermediate CA, found Staging Intermediate CA",
            'app-a: chain: expected a leaf signed by the issuing CA of pki_int (CN=Prod Intermediate CA), found a leaf it did not sign (its issuer CN is "Staging Intermediate CA")',
        ]);
    });

    test("expired leaf", async () => {
        const leaf = parseCertificate(certs.expired.certPem);
        const lines = await failureLines(withLeaf(certs.expired));
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(
            new RegExp(`^app-a: validity: expected notBefore <= \\S+Z < notAfter, found notBefore ${leaf.notBefore.toISOString()}, notAfter ${leaf.notAfter.toISOString()}$`),
        );
    });

    test("not-yet-valid leaf", async () => {
        const leaf = parseCertificate(certs.notYetValid.certPem);
        expect(await failureLines(withLeaf(certs.notYetValid))).toEqual([
            expect.stringMatching(new RegExp(`^app-a: validity: expected notBefore <= \\S+ < notAfter, found notBefore ${leaf.notBefore.toISOString()},`)),
        ]);
    });

    test("too little validity left", async () => {
        expect(await failureLines(withLeaf(certs.short))).toEqual([expect.stringMatching(/^app-a: remaining validity: expected at least 86400s, found 3\d{3}s \(notAfter /)]);
    });

    test("unchanged serial after a rotation", async () => {
        const serial = parseCertificate(certs.leaf.certPem).serial;
        const inputs = { ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf), previous: fullchainOf(certs.leaf) }) };
        expect(await failureLines(inputs)).toEqual([`app-a: serial changed: expected a serial other than the previous leaf's ${serial}, found the same serial ${serial}`]);
    });

    test("no report from the post-hook after the render, or a failed reload", async () => {
        const missing = { ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf), previous: fullchainOf(certs.previous), reload: "" }) };
        expect(await failureLines(missing)).toEqual(["app-a: post-hook reload: expected result=ok after the new render, found no report from the hook since the render"]);
        const failed = { ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf), previous: fullchainOf(certs.previous), reload: "result=failed reloaded=edge-proxy failed=app-a-web" }) };
        expect(await failureLines(failed)).toEqual(['app-a: post-hook reload: expected result=ok after the new render, found "result=failed reloaded=edge-proxy failed=app-a-web"']);
    });

    test("inactive agent service", async () => {
        const inputs = { ...base, hostState: hostState({ fullchain: fullchainOf(certs.leaf), previous: fullchainOf(certs.previous), service: "inactive" }) };
        expect(await failureLines(inputs)).toEqual(['app-a: agent service: expected active, found "inactive"']);
    });

    test("missing fullchain", async () => {
        const inputs = { ...base, hostState: hostState({ previous: fullchainOf(certs.previous) }) };
        expect(await failureLines(inputs)).toEqual([
            "app-a: fullchain present: expected a fullchain whose first CERTIFICATE block is the leaf, found no fullchain file or an empty one",
        ]);
    });

    test("wrong policy set (debug-policy on the mapping)", async () => {
        expect(await failureLines(withLeaf(certs.leaf, { hostState: hostState({ fullchain: fullchainOf(certs.leaf), login: "policies=app-a-issue,app-a-marker,debug-policy,default" }) }))).toEqual([
            "app-a: token policies: expected [app-a-issue, app-a-marker, default], found [app-a-issue, app-a-marker, debug-policy, default] (extra [debug-policy])",
        ]);
    });

    test("a missing policy", async () => {
        expect(await failureLines(withLeaf(certs.leaf, { hostState: hostState({ fullchain: fullchainOf(certs.leaf), login: "policies=app-a-issue,default" }) }))).toEqual(["app-a: token policies: expected [app-a-issue, app-a-marker, default], found [app-a-issue, default] (missing [app-a-marker])"]);
    });

    const LOGIN_EXPECTED = "expected a token from auth/cert/login with name agent-app-a on the host (as the app user, with the new agent files)";
    test.each([
        ["error=Error authenticating: Code: 400. Errors: * invalid certificate or no client certificate supplied", `found Error authenticating: Code: 400. Errors: * invalid certificate or no client certificate supplied`],
        ["error=", "found an error without a message"],
        [null, "found no login report from the host (no `### login` line in the read-state output)"],
        ["", "found no login report from the host (no `### login` line in the read-state output)"],
        ["token=hvs.whatever", 'found the report "token=hvs.whatever"'],
    ])("the host's login report %j fails the cert login item", async (login, found) => {
        expect(await failureLines(withLeaf(certs.leaf, { hostState: hostState({ fullchain: fullchainOf(certs.leaf), login }) }))).toEqual([`app-a: cert login: ${LOGIN_EXPECTED}, ${found}`]);
    });

    test("a policies line that is not a list of policy names is not trusted", async () => {
        expect(await failureLines(withLeaf(certs.leaf, { hostState: hostState({ fullchain: fullchainOf(certs.leaf), login: "policies=default,$(id)" }) }))).toEqual([
            'app-a: cert login: expected policies=<comma-separated policy names>, found "policies=default,$(id)"',
        ]);
        expect(await failureLines(withLeaf(certs.leaf, { hostState: hostState({ fullchain: fullchainOf(certs.leaf), login: "policies=" }) }))).toHaveLength(1);
    });

    test("the issuing CA cannot be fetched", async () => {
        server.setHandler(vaultRoutes({ "GET pki_int/cert/ca": { status: 403, json: { errors: ["permission denied"] } } }));
        expect(await failureLines(base)).toEqual(["app-a: chain: expected the issuing CA of pki_int from Vault, found pki_int/cert/ca: Vault answered 403: permission denied; pki_int/ca/pem: Vault answered 404",]);
    });

    test("every failure is collected into one error that says what to do", async () => {
        const inputs = withLeaf(certs.wrongCn, {
            hostState: hostState({ fullchain: fullchainOf(certs.wrongCn), previous: fullchainOf(certs.previous), service: "failed", login: `policies=${[...EXPECTED_POLICIES, "debug-policy"].join(",")}` }),
        });
        const err = (await provider.create(inputs).catch((e: unknown) => e)) as Error;
        const lines = err.message.split("\n");
        expect(lines[0]).toBe("vault-rotation: the post-rotation check failed for app-a (3 items):");
        expect(lines.slice(1, 4).map((l) => l.trim())).toEqual([
            "app-a: token policies: expected [app-a-issue, app-a-marker, default], found [app-a-issue, app-a-marker, debug-policy, default] (extra [debug-policy])",
            "app-a: leaf CN: expected app-a.internal, found app-b.internal",
            'app-a: agent service: expected active, found "failed"',
        ]);
        expect(lines[4]).toContain("re-run `pulumi up`");
        expect(lines[4]).toContain("journalctl --user -u vault-agent-app-a");
        expect(lines).toHaveLength(5);
    });
});

describe("pure checks", () => {
    test("failureLine has the fixed format", () => {
        expect(failureLine("app-b", "leaf CN", "x", "y")).toBe("app-b: leaf CN: expected x, found y");
    });

    test("checkPolicies ignores order and duplicates", () => {
        expect(checkPolicies("app-a", EXPECTED_POLICIES, ["default", "app-a-marker", "app-a-issue", "default"])).toEqual([]);
    });

    test("checkLogin: exactly the expected policies pass, and the token's policies are reported", () => {
        const login = { certAuthPath: "cert", mappingName: "agent-app-a", expectedPolicies: EXPECTED_POLICIES };
        expect(checkLogin("app-a", login, "policies=app-a-issue,app-a-marker,default\n")).toEqual({ lines: [], tokenPolicies: EXPECTED_POLICIES });
        expect(checkLogin("app-a", login, "policies=app-a-issue,default").lines).toHaveLength(1);
    });

    test("parseHostState takes the login section's first line only, and \"\" when there is none", () => {
        expect(parseHostState(hostState({ login: "policies=a,default\npolicies=forged" })).login).toBe("policies=a,default");
        expect(parseHostState(hostState({ login: null })).login).toBe("");
        expect(parseHostState(hostState({ login: "error=permission denied" }))).toMatchObject({ login: "error=permission denied", service: "active", agentVersion: "Vault v1.21.1" });
    });

    test("checkAgentService wants exactly `active`", () => {
        expect(checkAgentService("app-a", "active\n")).toEqual([]);
        expect(checkAgentService("app-a", "activating")).toEqual(['app-a: agent service: expected active, found "activating"']);
        expect(checkAgentService("app-a", "")).toEqual(["app-a: agent service: expected active, found no answer from systemctl"]);
    });
});

describe("check", () => {
    test("good inputs pass; values unknown during preview are skipped", async () => {
        await expect(provider.check!({} as RotationCheckInputs, base)).resolves.toEqual({ inputs: base, failures: [] });
        const preview = { ...base, agentCertPem: UNKNOWN_INPUT, hostState: UNKNOWN_INPUT };
        await expect(provider.check!({} as RotationCheckInputs, preview)).resolves.toMatchObject({ failures: [] });
    });

    test("names every bad property", async () => {
        const res = await provider.check!({} as RotationCheckInputs, {
            ...base,
            app: "App A",
            certAuthPath: "cert/",
            agentCertPem: "garbage",
            expectedPolicies: ["app-a-issue"],
            allowedDomains: [],
            minRemainingSeconds: -1,
        });
        expect(res.failures?.map((f) => f.property)).toEqual(["app", "certAuthPath", "agentCertPem", "expectedPolicies", "allowedDomains", "minRemainingSeconds"]);
    });
});

describe("diff", () => {
    const stored = (): RotationCheckOutputs => ({
        ...storedHostState(base),
        agentSerial: "01",
        leafSerial: "02",
        leafNotAfter: "2026-12-27T00:00:00.000Z",
        leafDaysLeft: 30,
        previousLeafSerial: "",
        tokenPolicies: EXPECTED_POLICIES,
        servedSerial: "",
        servedVia: "not checked (no serve.endpoint)",
        checkedAt: "2026-11-27T00:00:00.000Z",
        serverVersion: "1.21.1",
        agentVersion: "1.21.1",
        versionMismatch: false,
        agentAhead: false,
        versionWarning: "",
    });

    test.each<[string, Partial<RotationCheckInputs>]>([
        ["hostState", { hostState: "### fullchain\nnew" }],
        ["agentCertPem", { agentCertPem: "new cert" }],
        ["expectedPolicies", { expectedPolicies: ["default"] }],
        ["connection", { connection: { address: "https://vault2:8200" } }],
        ["minRemainingSeconds", { minRemainingSeconds: 1 }],
    ])("a new %s means a new check (replace)", async (key, change) => {
        await expect(provider.diff!("id", stored(), { ...base, ...change })).resolves.toEqual({ changes: true, replaces: [key] });
    });

    test("a value unknown during preview is a replace; identical inputs are no change", async () => {
        await expect(provider.diff!("id", stored(), { ...base, hostState: UNKNOWN_INPUT })).resolves.toEqual({ changes: true, replaces: ["hostState"] });
        await expect(provider.diff!("id", stored(), { ...base })).resolves.toEqual({ changes: false, replaces: [] });
    });

    test("the outputs keep the host's report as its digest only; outputs that kept the text (older state) compare the same", async () => {
        const outs = stored();
        expect(outs).not.toHaveProperty("hostState");
        expect(outs.hostStateSha256).toBe(sha256Hex(base.hostState));
        const { hostStateSha256: _digest, ...older } = { ...outs, hostState: base.hostState };
        await expect(provider.diff!("id", older as RotationCheckOutputs, { ...base })).resolves.toEqual({ changes: false, replaces: [] });
        await expect(provider.diff!("id", older as RotationCheckOutputs, { ...base, hostState: `${base.hostState}\nmore` })).resolves.toEqual({ changes: true, replaces: ["hostState"] });
    });
});
