// The resource graph under Pulumi mocks: types, names, security-relevant inputs
// and resource options, for the prod stack and a three-app stack of our own.
import { defaultNewResource, evaluateProgram, Evaluation, Registration } from "../support/harness";
import { fakeListenerCaFile, prodStack, TEST_HOST_KEY, TEST_LISTENER_CA_PEM, TEST_SSH_PRIVATE_KEY, threeAppStack } from "../support/stacks";
import { resolveStepScript } from "../../components/stepScripts";

const ROLE = "vault:pkiSecret/secretBackendRole:SecretBackendRole";
const POLICY = "vault:index/policy:Policy";
const MAPPING = "vault:index/certAuthBackendRole:CertAuthBackendRole";
const AUTH = "pulumi-nodejs:dynamic/vault-rotation:CertAuthMount";
const TAKEOVER = "pulumi-nodejs:dynamic/vault-rotation:VaultTakeover";
const SIGN = "vault:pkiSecret/secretBackendSign:SecretBackendSign";
const LOCAL = "command:local:Command";
const REMOTE = "command:remote:Command";
const REVOCATION = "pulumi-nodejs:dynamic/vault-rotation:CertRevocation";

const caFile = fakeListenerCaFile();

function ofType(e: Evaluation, type: string): Registration[] {
    return e.registrations.filter((r) => r.type === type);
}
function named(e: Evaluation, name: string): Registration {
    const r = e.byName.get(name);
    if (!r) throw new Error(`no resource named ${name}; have: ${[...e.byName.keys()].join(", ")}`);
    return r;
}
function isCommand(r: Registration): boolean {
    return r.type === LOCAL || r.type === REMOTE;
}
/** Every string inside a value, recursively. */
function strings(value: unknown): string[] {
    if (typeof value === "string") return [value];
    if (Array.isArray(value)) return value.flatMap(strings);
    if (value && typeof value === "object") return Object.values(value).flatMap(strings);
    return [];
}
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

let prod: Evaluation;
let three: Evaluation;

beforeAll(async () => {
    prod = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
    three = await evaluateProgram({ config: threeAppStack(caFile), secretKeys: ["vault-rotation:sshPrivateKey", "vault-rotation:kvSeedData"] });
});

describe("stack-level objects", () => {
    it("declares exactly one cert auth method at the configured path, protected", () => {
        expect(ofType(prod, AUTH).map((r) => [r.inputs.path, r.protect])).toEqual([["cert", true]]);
        expect(ofType(three, AUTH).map((r) => [r.inputs.path, r.protect])).toEqual([["cert-agents", true]]);
        // And the destroy guard, which depends on every other resource, so `pulumi destroy` stops at it first.
        // Nothing else is protected: every other object is replaced on a rotation, which protection would refuse.
        expect(prod.registrations.filter((r) => r.protect).map((r) => r.name).sort()).toEqual(["vault-rotation-cert-auth", "vault-rotation-destroy-guard"]);
        const guard = named(prod, "vault-rotation-destroy-guard");
        const others = prod.registrations.filter((r) => r.custom && r.name !== guard.name);
        for (const r of others) expect({ name: r.name, guarded: guard.dependencies.includes(r.urn) }).toEqual({ name: r.name, guarded: true });
    });

    it("surveys every Vault object of an app before the first write to it", () => {
        for (const app of ["app-a", "app-b"]) {
            const takeover = named(prod, `${app}-takeover`);
            const objects = takeover.inputs.objects as { kind: string; name: string }[];
            expect(objects.map((o) => `${o.kind} ${o.name}`)).toEqual([
                `pki-role agent-${app}`,
                `pki-role nginx-${app}`,
                `policy ${app}-issue`,
                `policy ${app}-marker`,
                `policy ${app}-kv`,
                `cert-mapping agent-${app}`,
            ]);
            for (const suffix of ["agent-role", "agent-issue-policy", "agent-marker-policy", "agent-mapping", "leaf-role", "leaf-kv-policy"]) {
                expect({ suffix, deps: named(prod, `${app}-${suffix}`).dependencies }).toEqual({ suffix, deps: expect.arrayContaining([takeover.urn]) });
            }
        }
        expect(ofType(prod, TAKEOVER)).toHaveLength(2);
        // debug-policy is the stack's: surveyed once, before it is written.
        const debugTakeover = named(three, "vault-rotation-debug-policy-takeover");
        expect(named(three, "vault-rotation-debug-policy").dependencies).toContain(debugTakeover.urn);
    });

    it("creates debug-policy only when some app asks for it", () => {
        expect(ofType(prod, POLICY).map((r) => r.inputs.name)).not.toContain("debug-policy");
        expect(ofType(three, POLICY).filter((r) => r.inputs.name === "debug-policy")).toHaveLength(1);
    });

    it("detects the KV mount once for the stack", () => {
        const kv = three.registrations.filter((r) => r.type === "pulumi-nodejs:dynamic/vault-rotation:KvMount");
        expect(kv.map((r) => r.inputs.mount)).toEqual(["kv"]);
    });
});

describe.each([
    ["prod", () => prod, ["app-a", "app-b"]],
    ["three-app", () => three, ["web", "api", "jobs"]],
])("agent identity per app (%s stack)", (_label, get, apps) => {
    it("has one client-only agent role per app allowing only the agent CN", () => {
        const e = get();
        for (const app of apps) {
            const role = named(e, `${app}-agent-role`);
            const mapping = named(e, `${app}-agent-mapping`);
            const cn = (mapping.inputs.allowedCommonNames as string[])[0];
            expect(role.type).toBe(ROLE);
            expect(role.inputs).toMatchObject({
                name: `agent-${app}`,
                clientFlag: true,
                serverFlag: false,
                allowedDomains: [cn],
                allowBareDomains: true,
                allowSubdomains: false,
                allowGlobDomains: false,
                allowWildcardCertificates: false,
                allowAnyName: false,
                allowLocalhost: false,
                allowIpSans: false,
                keyType: "ec",
                keyBits: 256,
            });
            expect(Number(role.inputs.maxTtl)).toBeLessThanOrEqual(14 * 86400);
        }
    });

    it("generates the agent key on the host (again on a new epoch) and signs only its CSR under the agent role", () => {
        const e = get();
        const epoch = e === prod ? (prod.exports.rotationPlan as { epoch: string }).epoch : "e1";
        expect(e.registrations.filter((r) => r.type.startsWith("tls:"))).toEqual([]);
        for (const app of apps) {
            const keygen = named(e, `${app}-agent-keygen`);
            expect(isCommand(keygen)).toBe(true);
            // The epoch, and the OU mark the mapping requires (a cert without it must be replaced).
            expect(keygen.inputs.triggers).toEqual([epoch, `vault-rotation agent-${app}`]);
            expect(keygen.inputs.stdin).toBeUndefined();
            expect(resolveStepScript(String(keygen.inputs.create))).toContain("STEP='agent-keygen'");
            expect(resolveStepScript(String(keygen.inputs.create))).toContain("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256");
            const sign = named(e, `${app}-agent-cert`);
            expect(sign.type).toBe(SIGN);
            expect(sign.inputs.name).toBe(`agent-${app}`);
            expect(sign.inputs.csr).toMatch(/BEGIN CERTIFICATE REQUEST/);
            expect(sign.inputs).toMatchObject({ autoRenew: true, format: "pem" });
            expect(sign.inputs.minSecondsRemaining).toBeGreaterThan(0);
        }
    });

    it("revokes the replaced agent cert by serial, after the new files are written", () => {
        const e = get();
        for (const app of apps) {
            const rev = named(e, `${app}-agent-revocation`);
            const sign = named(e, `${app}-agent-cert`);
            expect(rev.type).toBe(REVOCATION);
            expect(rev.inputs.serialNumber).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2})+$/);
            expect(rev.inputs.pkiMount).toBe(sign.inputs.backend);
            expect(rev.dependencies).toContain(named(e, `${app}-agent-files`).urn);
        }
    });

    it("maps the agent CN to the full policy list, with no policy of another app", () => {
        const e = get();
        for (const app of apps) {
            const mapping = named(e, `${app}-agent-mapping`);
            expect(mapping.type).toBe(MAPPING);
            expect(mapping.inputs.name).toBe(`agent-${app}`);
            // Exactly one CA: the agent cert's issuer (never the root or a bundle), and the OU mark the agent role sets.
            expect(String(mapping.inputs.certificate).match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
            expect(mapping.inputs.allowedOrganizationalUnits).toEqual([`vault-rotation agent-${app}`]);
            const role = ofType(e, "vault:pkiSecret/secretBackendRole:SecretBackendRole").find((r) => r.inputs.name === `agent-${app}`)!;
            expect(role.inputs.organizationUnit).toEqual([`vault-rotation agent-${app}`]);
            const policies = mapping.inputs.tokenPolicies as string[];
            expect(policies).toContain(`${app}-issue`);
            for (const other of apps.filter((a) => a !== app)) {
                expect(policies.some((p) => p.startsWith(`${other}-`))).toBe(false);
            }
            const issue = ofType(e, POLICY).find((p) => p.inputs.name === `${app}-issue`)!;
            expect(issue.inputs.policy).toContain(`/issue/nginx-${app}"`);
            expect(issue.inputs.policy).toMatch(/capabilities = \["update"\]/);
            for (const other of apps.filter((a) => a !== app)) expect(issue.inputs.policy).not.toContain(`nginx-${other}`);
        }
    });

    it("installs the host's own key 0600 and cert and CA 0644, as the app user, with nothing on stdin", () => {
        const e = get();
        for (const app of apps) {
            const files = named(e, `${app}-agent-files`);
            const script = resolveStepScript(String(files.inputs.create));
            // The key matching the cert moves into place by rename; nothing writes key material.
            expect(script).toMatch(/^NEXT_KEY='\\''[^']*\/vault\/mtls\/agent\.key\.next'\\''$/m);
            expect(script).toContain(`chmod 0600 -- "$NEXT_KEY" && mv -f -T -- "$NEXT_KEY" "$KEY"`);
            expect(script).toContain(`"$AGENT_CERT_PEM" | stage_file "$CERT" 0644`);
            expect(script).toContain(`"$LISTENER_CA_PEM" | stage_file "$CA_PEM" 0644`);
            expect(script).toMatch(/^CERT='\\''[^']*\/vault\/mtls\/agent\.crt'\\''$/m);
            expect(script).toMatch(/^CA_PEM='\\''[^']*\/vault\/ca\/ca\.pem'\\''$/m);
            // The launcher switches to the app user; the body alone touches the home.
            expect(script).toMatch(new RegExp(`^APP_USER='${app === "app-a" || app === "app-b" ? app : "[a-z-]+"}'$`, "m"));
            expect(script).toContain('setpriv --reuid="$uid" --regid="$gid" --init-groups --');
            expect(script).toContain(TEST_LISTENER_CA_PEM.split("\n")[1]);
            expect(files.inputs.stdin).toBeUndefined();
            expect(files.secretInputs).not.toContain("stdin");
        }
    });
});

describe("debug-policy and host targets", () => {
    it("puts debug-policy on a mapping exactly when the app configures it", () => {
        const policiesOf = (e: Evaluation, app: string) => named(e, `${app}-agent-mapping`).inputs.tokenPolicies as string[];
        expect(policiesOf(prod, "app-a")).not.toContain("debug-policy");
        expect(policiesOf(prod, "app-b")).not.toContain("debug-policy");
        expect(policiesOf(three, "web")).toContain("debug-policy");
        expect(policiesOf(three, "api")).not.toContain("debug-policy");
        expect(policiesOf(three, "jobs")).not.toContain("debug-policy");
    });

    it("attaches the marker policy unless disabled, and the KV policy only with KV access", () => {
        expect(named(prod, "app-a-agent-mapping").inputs.tokenPolicies).toEqual(["app-a-issue", "app-a-marker", "app-a-kv"]);
        expect(named(three, "api-agent-mapping").inputs.tokenPolicies).toEqual(["api-issue"]);
        expect(three.byName.has("api-agent-marker-policy")).toBe(false);
        expect(three.byName.has("api-leaf-kv-policy")).toBe(false);
    });

    it("runs ssh hosts through command.remote as the app user, with the pinned host key and the secret key, and local hosts through command.local", () => {
        const api = three.registrations.filter((r) => isCommand(r) && r.name.startsWith("api-"));
        expect(api.map((r) => r.name).sort()).toEqual(["api-agent-files", "api-agent-keygen", "api-leaf-agent-config", "api-leaf-rotate", "api-verified", "api-verify"]);
        for (const r of api) {
            expect(r.type).toBe(REMOTE);
            expect(r.inputs.connection).toEqual({ host: "api-host.test.internal", port: 2222, user: "api-svc", hostKey: TEST_HOST_KEY, privateKey: TEST_SSH_PRIVATE_KEY, dialErrorLimit: 10, perDialTimeout: 15 });
            expect(r.secretInputs).toContain("connection");
        }
        const web = three.registrations.filter((r) => isCommand(r) && r.name.startsWith("web-"));
        for (const r of web) expect(r.type).toBe(LOCAL);
    });
});

describe("secrets", () => {
    it.each([
        ["prod", () => prod],
        ["three-app", () => three],
    ])("puts no private key in any command line, trigger, environment or plain output (%s)", async (_l, get) => {
        const e = get();
        for (const r of e.registrations.filter(isCommand)) {
            for (const field of ["create", "update", "delete", "environment", "triggers"]) {
                for (const s of strings(r.inputs[field])) expect(s).not.toMatch(PRIVATE_KEY);
            }
            // stderr only: one line per step; stdout (certificate text) stays in outputs.
            expect(r.inputs.logging).toBe("stderr");
        }
        for (const s of strings(e.exports)) expect(s).not.toMatch(PRIVATE_KEY);
        // The agent key is generated on the host: no input of any resource holds a private key
        // (but the runner's SSH login key in a remote command's connection).
        const places = e.registrations.flatMap((r) =>
            Object.entries(r.inputs)
                .filter(([k, v]) => k !== "__provider" && k !== "connection" && strings(v).some((s) => PRIVATE_KEY.test(s)))
                .map(([k]) => `${r.type} ${r.name}.${k}`),
        );
        expect(places).toEqual([]);
        for (const r of e.registrations.filter((r) => r.type === "pulumi-nodejs:dynamic/vault-rotation:RotationCheck")) {
            expect(Object.keys(r.inputs)).not.toContain("agentKeyPem");
        }
    });

    it.each([
        ["prod", () => prod],
        ["three-app", () => three],
    ])("sends nothing to a host on standard input (%s)", (_l, get) => {
        for (const r of get().registrations.filter(isCommand)) expect([r.name, r.inputs.stdin]).toEqual([r.name, undefined]);
    });
});

describe("component structure", () => {
    it("uses the public type tokens and parents every child under its app", () => {
        const components = prod.registrations.filter((r) => !r.custom).map((r) => `${r.type} ${r.name}`);
        expect(components).toEqual(
            expect.arrayContaining([
                "vault-rotation:components:StackBase vault-rotation",
                "vault-rotation:components:AppRotation app-a",
                "vault-rotation:components:AgentIdentity app-a-agent",
                "vault-rotation:components:AppLeaf app-a-leaf",
                "vault-rotation:components:AppRotation app-b",
            ]),
        );
        const appA = named(prod, "app-a");
        const agent = named(prod, "app-a-agent");
        expect(agent.parentUrn).toBe(appA.urn);
        expect(named(prod, "app-a-agent-keygen").parentUrn).toBe(agent.urn);
        expect(named(prod, "app-a-leaf-role").parentUrn).toBe(named(prod, "app-a-leaf").urn);
    });

    it("exports a report per app with role, mapping and agent cert facts", () => {
        const apps = prod.exports.apps as Record<string, Record<string, unknown>>;
        expect(Object.keys(apps).sort()).toEqual(["app-a", "app-b"]);
        expect(apps["app-a"]).toMatchObject({
            agentRole: "agent-app-a",
            leafRole: "nginx-app-a",
            mapping: "agent-app-a",
            tokenPolicies: ["app-a-issue", "app-a-marker", "app-a-kv"],
        });
        expect(apps["app-a"].agentCertSerial).toMatch(/^[0-9a-f:]+$/);
        expect(apps["app-a"].agentCertNotAfter).toBe(new Date(1893456000 * 1000).toISOString());
        expect(prod.exports.rotationPlan).toMatchObject({ epoch: expect.stringMatching(/^every-720h-\d{4}-\d\d-\d\dT/), epochSource: "schedule" });
    });
});

describe("one Vault identity per run", () => {
    const VAULT_TYPES = [ROLE, POLICY, MAPPING, SIGN];
    let withOidc: Evaluation;
    const saved = process.env.PULUMI_OIDC_TOKEN;
    beforeAll(async () => {
        // A Deployment has an OIDC token of its own: the program must not turn it into a second identity.
        process.env.PULUMI_OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZXBsb3kifQ.sig";
        withOidc = await evaluateProgram({ config: prodStack(caFile), stack: "prod" });
    });
    afterAll(() => {
        if (saved === undefined) delete process.env.PULUMI_OIDC_TOKEN;
        else process.env.PULUMI_OIDC_TOKEN = saved;
    });

    it("declares no explicit Vault provider: every Vault resource uses the default one (VAULT_TOKEN)", () => {
        expect(ofType(withOidc, "pulumi:providers:vault")).toEqual([]);
        const vaultResources = withOidc.registrations.filter((r) => VAULT_TYPES.includes(r.type));
        expect(vaultResources.length).toBeGreaterThan(10);
        for (const r of vaultResources) expect(r.provider ?? "").not.toMatch(/::pulumi:providers:vault::(?!default)/);
    });

    it("puts no token, JWT or login setting in any resource input", () => {
        for (const r of withOidc.registrations) {
            const text = JSON.stringify(r.inputs);
            expect({ name: r.name, jwt: /eyJ[A-Za-z0-9_-]+\.eyJ/.test(text), token: /"(hvs|s)\.[A-Za-z0-9]{8,}/.test(text) }).toEqual({ name: r.name, jwt: false, token: false });
            expect({ name: r.name, keys: text.match(/"(jwtAuth|authLogin\w*|token)":/g) ?? [] }).toEqual({ name: r.name, keys: [] });
        }
        const check = named(withOidc, "app-a-check");
        expect(Object.keys(check.inputs.connection as object).sort()).toEqual(["address", "caCertFile"]);
    });

    it("leaves the CA file out of every input when it comes from VAULT_CACERT (a new temp path each ESC run)", async () => {
        const config = prodStack(caFile);
        delete config["vault:caCertFile"];
        const savedCa = process.env.VAULT_CACERT;
        process.env.VAULT_CACERT = caFile;
        try {
            const e = await evaluateProgram({ config, stack: "prod" });
            for (const r of e.registrations) expect({ name: r.name, ca: JSON.stringify(r.inputs).includes(caFile) }).toEqual({ name: r.name, ca: false });
            expect(named(e, "app-a-check").inputs.connection).toEqual({ address: "https://vault.prod.internal:8200" });
            // The CA still reaches the hosts (its text, in the files step).
            expect(resolveStepScript(String(named(e, "app-a-agent-files").inputs.create))).toContain(TEST_LISTENER_CA_PEM.trim().split("\n")[1]);
        } finally {
            if (savedCa === undefined) delete process.env.VAULT_CACERT;
            else process.env.VAULT_CACERT = savedCa;
        }
    });
});

describe("rotation plan output", () => {
    it("says per app whether the agent cert is due for renewal, from the provider's renewPending", async () => {
        const e = await evaluateProgram({
            config: prodStack(caFile),
            stack: "prod",
            newResource: async (args, registration) => {
                const base = await defaultNewResource(args, registration);
                if (args.type === SIGN) base.state.renewPending = args.name === "app-b-agent-cert";
                return base;
            },
        });
        const plan = e.exports.rotationPlan as { apps: Record<string, { renewalDue: boolean; why: string }> };
        expect(plan.apps["app-a"].renewalDue).toBe(false);
        expect(plan.apps["app-a"].why).toMatch(/^agent cert valid until 2030-01-01T00:00:00\.000Z; renewed once less than 129600s remain$/);
        expect(plan.apps["app-b"].renewalDue).toBe(true);
        expect(plan.apps["app-b"].why).toMatch(/inside the renewal window \(129600s\): this run renews it/);
    });
});
