// The resource classes under Pulumi mocks (type tokens, secret outputs), and the
// providers exactly as Pulumi ships them: the serialized `__provider` text each
// class registers is loaded the way the dynamic-provider host loads it, in a
// plain `node` child process (no ts-node loaded up front), and run against the
// stand-in Vault. This is what catches a provider method that depends on
// something that does not survive serialization.
//
// The serialized text is a small forwarder that loads @vault-rotation/providers
// by package name. The child runs in a directory outside the repository whose
// only link to it is `node_modules` (as a project checkout with `npm ci` done
// anywhere else would be), and once in a directory without node_modules, where
// it must fail saying what to do.
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import * as settings from "@pulumi/pulumi/runtime/settings";
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { CertRevocation } from "../../../providers/certRevocation";
import { KvMount } from "../../../providers/kvMount";
import { KvSeed } from "../../../providers/kvSeed";
import { RotationCheck } from "../../../providers/rotationCheck";
import { UNKNOWN_INPUT } from "../../../providers/vaultClient";
import { routes, startFakeVault, type TestHttpsServer } from "../../support/httpsServer";
import { TestPki, type TestCert } from "../../support/tls";

// `getStore` is internal (not in the .d.ts).
const state = require("@pulumi/pulumi/runtime/state") as { getStore(): { supportsSecrets: boolean } };

const TOKEN = "hvs.resources-test-token";
const SEED_VALUE = "seed-value-that-must-stay-secret";
const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";

interface Registration {
    type: string;
    name: string;
    additionalSecretOutputs: string[];
    /** Serialized inputs, secrets still wrapped. */
    object: Record<string, unknown>;
}

const registrations: Registration[] = [];

class RecordingMonitor extends MockMonitor {
    // The request is a generated gRPC message type that the mocks module leaves untyped.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    async registerResource(req: any, callback: (err: unknown, response: unknown) => void): Promise<void> {
        registrations.push({
            type: req.getType() as string,
            name: req.getName() as string,
            additionalSecretOutputs: req.getAdditionalsecretoutputsList() as string[],
            object: req.getObject().toJavaScript() as Record<string, unknown>,
        });
        return super.registerResource(req, callback);
    }
}

let pki: TestPki;
let server: TestHttpsServer;
let connection: { address: string; caCertFile: string };
const certs: Record<string, TestCert> = {};

beforeAll(async () => {
    const mocks = { newResource: async (args: pulumi.runtime.MockResourceArgs) => ({ id: `${args.name}-id`, state: args.inputs }), call: async () => ({}) };
    await pulumi.runtime.setMocks(mocks, "vault-rotation", "test");
    settings.setMockOptions(new RecordingMonitor(mocks), "vault-rotation", "test");
    // setMockOptions resets the feature flags that setMocks turned on; without this,
    // secret inputs would be sent unwrapped and the secrecy assertions below would be vacuous.
    state.getStore().supportsSecrets = true;

    pki = TestPki.create();
    const root = pki.rootCa("Prod Root CA");
    certs.intermediate = pki.issue({ issuer: root, commonName: "Prod Intermediate CA", isCA: true });
    certs.agent = pki.issue({ issuer: certs.intermediate, commonName: "agent-a.prod.internal", usage: ["clientAuth"] });
    certs.leaf = pki.issue({ issuer: certs.intermediate, commonName: "app-a.internal", dnsNames: ["app-a.internal"], days: 10 });
    const vault = await startFakeVault(pki, { clientCaPem: `${certs.intermediate.certPem}${root.certPem}` });
    server = vault.server;
    connection = vault.connection;
});

afterAll(async () => {
    await server.close();
    pki.cleanup();
});

function rotationInputs(service: string) {
    return {
        connection,
        app: "app-a",
        certAuthPath: "cert",
        mappingName: "agent-app-a",
        agentCertPem: certs.agent.certPem,
        expectedPolicies: ["app-a-issue", "default"],
        hostState: [
            "### fullchain", certs.leaf.certPem,
            "### previous",
            "### reload", "result=ok reloaded=web failed=",
            "### service", service,
            "### login", "policies=app-a-issue,default",
            "### agent-version", "Vault v1.22.0",
            "### end",
        ].join("\n"),
        leafCommonName: "app-a.internal",
        allowedDomains: ["app-a.internal"],
        issuerCommonName: "Prod Intermediate CA",
        pkiMount: "pki_int",
        minRemainingSeconds: 3600,
    };
}

async function registered(resource: pulumi.CustomResource, name: string): Promise<Registration> {
    await new Promise<void>((resolve) => resource.urn.apply(() => resolve()));
    const found = registrations.find((r) => r.name === name);
    if (!found) throw new Error(`${name} was not registered`);
    return found;
}

const isSecret = (value: unknown) => typeof value === "object" && value !== null && SECRET_SIG_KEY in value;

interface Job {
    provider: string;
    method: "check" | "create" | "read" | "delete";
    args: unknown[];
}

/** A working directory outside the repository: empty, or holding only a link to the project's node_modules. */
function projectDir(name: string, withNodeModules: boolean): string {
    const dir = path.join(pki.dir, name);
    fs.mkdirSync(dir, { recursive: true });
    if (withNodeModules && !fs.existsSync(path.join(dir, "node_modules"))) {
        fs.symlinkSync(path.resolve(__dirname, "..", "..", "..", "node_modules"), path.join(dir, "node_modules"), "dir");
    }
    return dir;
}

/** Runs provider methods from their serialized text in a plain node process, as the dynamic-provider host does. */
async function runSerialized(jobs: Job[], cwd = projectDir("project", true)): Promise<({ ok: unknown } | { error: string })[]> {
    const requireFromString = require.resolve("require-from-string", { paths: [path.dirname(require.resolve("@pulumi/pulumi"))] });
    const jobsFile = pki.writeFile("jobs.json", JSON.stringify(jobs));
    const runner = pki.writeFile(
        "runner.js",
        `const rfs = require(${JSON.stringify(requireFromString)});
const jobs = JSON.parse(require("fs").readFileSync(${JSON.stringify(jobsFile)}, "utf8"));
(async () => {
  const results = [];
  for (const job of jobs) {
    try { const provider = rfs(job.provider).handler(); results.push({ ok: (await provider[job.method](...job.args)) ?? null }); }
    catch (e) { results.push({ error: String(e && e.message) }); }
  }
  process.stdout.write(JSON.stringify(results));
})();
`,
    );
    const stdout = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [runner], { cwd, env: { PATH: process.env.PATH ?? "", VAULT_TOKEN: TOKEN }, timeout: 20_000 }, (err, out, errOut) =>
            err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out),
        ),
    );
    return JSON.parse(stdout) as ({ ok: unknown } | { error: string })[];
}

test("the providers' preview placeholder is Pulumi's unknown value", () => {
    expect(UNKNOWN_INPUT).toBe(pulumi.runtime.unknownValue);
});

test("the resource classes register their type tokens and keep secret inputs secret", async () => {
    const seed = await registered(new KvSeed("seed", { connection, mount: "secret", version: "2", path: "apps/app-a", seed: true, data: { password: SEED_VALUE } }), "seed");
    expect(seed.type).toBe("pulumi-nodejs:dynamic/vault-rotation:KvSeed");
    expect(seed.additionalSecretOutputs).toContain("data");
    expect(isSecret(seed.object.data)).toBe(true);

    const check = await registered(new RotationCheck("check", rotationInputs("active")), "check");
    expect(check.type).toBe("pulumi-nodejs:dynamic/vault-rotation:RotationCheck");
    // The check holds no key: cert login is verified from the host's report.
    expect(Object.keys(check.object)).not.toContain("agentKeyPem");

    const types = await Promise.all([
        registered(new KvMount("mount", { connection, mount: "secret" }), "mount"),
        registered(new CertRevocation("revocation", { connection, pkiMount: "pki_int", serialNumber: "3a:1f" }), "revocation"),
    ]);
    expect(types.map((r) => r.type)).toEqual(["pulumi-nodejs:dynamic/vault-rotation:KvMount", "pulumi-nodejs:dynamic/vault-rotation:CertRevocation"]);

    for (const r of registrations) {
        const text = r.object.__provider;
        expect(typeof text).toBe("string");
        // A forwarder, not the implementation: small, and loading the package by name.
        expect((text as string).length).toBeLessThanOrEqual(4096);
        expect(text).toContain('require("@vault-rotation/providers")');
        expect(text).not.toContain("function checkFullchain");
        // Nothing secret is captured into the serialized provider.
        expect(text).not.toContain(SEED_VALUE);
        expect(text).not.toContain(certs.agent.keyPem.split("\n")[1]);
        expect(text).not.toContain(TOKEN);
    }
});

test("the serialized providers work in a plain node process", async () => {
    const providerOf = (name: string) => registrations.find((r) => r.name === name)?.object.__provider as string;
    expect(registrations.length).toBeGreaterThanOrEqual(4);
    server.setHandler(
        routes({
            "GET sys/mounts/secret": { json: { data: { type: "kv", options: { version: "2" } } } },
            "POST secret/data/apps/app-a": { json: { data: { version: 1 } } },
            "POST pki_int/revoke": (req) =>
                (req.body as { serial_number: string }).serial_number === "3a:1f"
                    ? { json: { data: { revocation_time: 1 } } }
                    : { status: 400, json: { errors: ["certificate with serial 0b:0c already expired; refusing to add to CRL"] } },
            "GET sys/health": { json: { version: "1.21.1" } },
            "GET pki_int/cert/ca": { json: { data: { certificate: certs.intermediate.certPem } } },
        }),
    );
    server.requests.length = 0;
    const results = await runSerialized([
        { provider: providerOf("mount"), method: "create", args: [{ connection, mount: "secret" }] },
        { provider: providerOf("seed"), method: "create", args: [{ connection, mount: "secret", version: "2", path: "apps/app-a", seed: true, data: { password: SEED_VALUE } }] },
        { provider: providerOf("seed"), method: "check", args: [{}, { connection, mount: "secret", version: "2", path: "apps/app-a", seed: true }] },
        { provider: providerOf("revocation"), method: "delete", args: ["pki_int:3a:1f", { connection, pkiMount: "pki_int", serialNumber: "3a:1f" }] },
        { provider: providerOf("check"), method: "read", args: ["app-a-rotation-check-01", { ...rotationInputs("active"), serverVersion: "1.20.0" }] },
        { provider: providerOf("check"), method: "create", args: [rotationInputs("active")] },
        { provider: providerOf("check"), method: "create", args: [rotationInputs("inactive")] },
        // A tolerated refusal: `instanceof VaultHttpError` must hold across the serialized functions.
        { provider: providerOf("revocation"), method: "delete", args: ["pki_int:0b:0c", { connection, pkiMount: "pki_int", serialNumber: "0b:0c" }] },
    ]);

    expect(results[0]).toEqual({ ok: { id: "secret", outs: { connection, mount: "secret", type: "kv", version: "2" } } });
    expect(results[1]).toMatchObject({ ok: { id: "secret/apps/app-a", outs: { status: "seeded" } } });
    expect(results[2]).toMatchObject({ ok: { failures: [{ property: "data" }] } });
    expect(results[3]).toEqual({ ok: null });
    expect(results[4]).toMatchObject({ ok: { props: { serverVersion: "1.21.1", agentVersion: "1.22.0", versionMismatch: true, agentAhead: true } } });
    expect(results[5]).toMatchObject({ ok: { outs: { tokenPolicies: ["app-a-issue", "default"], previousLeafSerial: "", serverVersion: "1.21.1", agentAhead: true } } });
    expect(results[6]).toEqual({ error: expect.stringContaining('app-a: agent service: expected active, found "inactive"') as string });
    expect((results[6] as { error: string }).error).toContain("journalctl --user -u vault-agent-app-a");

    expect(results[7]).toEqual({ ok: null });

    const revoke = server.requests.find((r) => r.path === "pki_int/revoke");
    expect(revoke?.headers["x-vault-token"]).toBe(TOKEN);
    expect(revoke?.body).toEqual({ serial_number: "3a:1f" });
});

test("a serialized provider outside a project (no node_modules) fails saying to run npm ci there", async () => {
    const provider = registrations.find((r) => r.name === "mount")?.object.__provider as string;
    const [result] = await runSerialized([{ provider, method: "check", args: [{}, { connection, mount: "secret" }] }], projectDir("not-a-project", false));
    expect(result).toEqual({ error: expect.stringContaining(`cannot load @vault-rotation/providers from ${fs.realpathSync(projectDir("not-a-project", false))}`) as string });
    expect((result as { error: string }).error).toContain("run `npm ci` in the Pulumi project directory");
});

/**
 * Each provider's `__provider` text as the program serializes it under Pulumi:
 * in a plain node process (as the language host starts the program, not jest's
 * module registry), the way @pulumi/pulumi's dynamic.Resource does
 * (serializeFunction of `() => provider`).
 */
async function serializedInNode(): Promise<Record<string, string>> {
    const repo = path.resolve(__dirname, "..", "..", "..");
    const script = pki.writeFile(
        "serialize.js",
        `require(${JSON.stringify(require.resolve("ts-node"))}).register({ transpileOnly: true, project: ${JSON.stringify(path.join(repo, "tsconfig.json"))} });
const { forwardingProvider } = require(${JSON.stringify(path.join(repo, "providers", "forward"))});
const implementations = require(${JSON.stringify(path.join(repo, "providers", "implementations"))});
const sc = require(${JSON.stringify(require.resolve("@pulumi/pulumi/runtime/closure/serializeClosure"))});
(async () => {
  const texts = {};
  for (const [name, implementation] of Object.entries(implementations)) {
    const provider = forwardingProvider(name, implementation);
    texts[name] = (await sc.serializeFunction(() => provider, { allowSecrets: true })).text;
  }
  process.stdout.write(JSON.stringify(texts));
})();
`,
    );
    const stdout = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [script], { cwd: repo, env: { PATH: process.env.PATH ?? "" }, timeout: 60_000 }, (err, out, errOut) =>
            err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out),
        ),
    );
    return JSON.parse(stdout) as Record<string, string>;
}

test("in the program's node process each serialized provider is one require of its forwarder module, and it works", async () => {
    const texts = await serializedInNode();
    expect(Object.keys(texts).length).toBe(9);
    for (const [name, text] of Object.entries(texts)) {
        expect({ name, requires: text.match(/require\("[^"]*"\)/g) }).toEqual({ name, requires: [`require("@vault-rotation/providers/forwarders/${name}.js")`] });
        expect({ name, small: text.length <= 400 }).toEqual({ name, small: true });
    }
    server.setHandler(routes({ "GET sys/mounts/secret": { json: { data: { type: "kv", options: { version: "2" } } } } }));
    const [created] = await runSerialized([{ provider: texts.kvMountProvider, method: "create", args: [{ connection, mount: "secret" }] }]);
    expect(created).toEqual({ ok: { id: "secret", outs: { connection, mount: "secret", type: "kv", version: "2" } } });
    // Outside a project the require itself fails, naming the module to install.
    const [outside] = await runSerialized([{ provider: texts.kvMountProvider, method: "check", args: [{}, { connection, mount: "secret" }] }], projectDir("not-a-project-2", false));
    expect(outside).toEqual({ error: expect.stringContaining("Cannot find module '@vault-rotation/providers/forwarders/kvMountProvider.js'") as string });
}, 90_000);
