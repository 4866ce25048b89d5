// deploy/index.ts (project vault-rotation-deploy) under Pulumi mocks, with the config of
// deploy/Pulumi.prod.yaml: the resources it registers (Deployment settings that load
// the guardrails pack from the repository, prod's localPack mode; the ESC environment
// the target stack imports; the schedules), their inputs and dependencies, its outputs,
// and that no input holds a Vault token or a JWT (the token exists only when ESC opens
// the environment). The policy-group mode, for when the pack is publishable, is loaded
// with config overrides (POLICY_GROUP), and so is a sharded fleet (`stacks`, staggered
// or not), against the names a one-stack deploy has always had.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
import { durationSeconds } from "../../config";
import { loadStackConfig } from "../support/harness";
import { cliConfigVerdict } from "../support/projectSchema";

const DEPLOY_DIR = path.join(__dirname, "..", "..", "deploy");
const REPO_DIR = path.join(DEPLOY_DIR, "..");
const PROJECT = "vault-rotation-deploy";

const T = {
    settings: "pulumiservice:index:DeploymentSettings",
    schedule: "pulumiservice:index:DeploymentSchedule",
    drift: "pulumiservice:index:DriftSchedule",
    environment: "pulumiservice:index:Environment",
    policyGroup: "pulumiservice:index:PolicyGroup",
    webhook: "pulumiservice:index:Webhook",
};

// How the SDK marks a secret input (runtime/rpc.ts); the mocks keep the wrapper.
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

interface Registered {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    urn?: string;
    dependencies: string[];
}

/** `key: value` scalars of a flat `config:` block, keyed without the namespace. */
function readStackConfig(file: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
        const m = /^\s+vault-rotation-deploy:(\w+):\s*(.*?)\s*$/.exec(line);
        if (m) out[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
    }
    return out;
}

/** Config keys declared in Pulumi.yaml, each with the lines of its block. */
function readDeclaredConfig(file: string): Map<string, string> {
    const declared = new Map<string, string>();
    const text = fs.readFileSync(file, "utf8");
    for (const m of text.matchAll(/^ {2}vault-rotation-deploy:(\w+):\n((?: {4}.*\n?)+)/gm)) declared.set(m[1], m[2]);
    return declared;
}

function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise((resolve) => output.apply((v) => resolve(v)));
}

function isSecretWrapper(value: unknown): value is { value: unknown } {
    return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** The environment's YAML text as registered, and whether it was a secret input. */
async function environmentYaml(inputs: Record<string, unknown>): Promise<{ text: string; secret: boolean }> {
    const secret = isSecretWrapper(inputs.yaml);
    const asset = (secret ? (inputs.yaml as { value: unknown }).value : inputs.yaml) as pulumi.asset.StringAsset;
    expect(pulumi.asset.StringAsset.isInstance(asset)).toBe(true);
    return { text: await asset.text, secret };
}

interface EnvironmentValues {
    vault: { login: Record<string, { address: string; jwt: Record<string, unknown> }> };
    environmentVariables: Record<string, string>;
    files: Record<string, string>;
    pulumiConfig: Record<string, unknown>;
}

/** The environment definition, parsed with a YAML parser (what ESC reads). */
async function environmentValues(inputs: Record<string, unknown>): Promise<EnvironmentValues> {
    const doc = yaml.load((await environmentYaml(inputs)).text) as { values: EnvironmentValues };
    expect(Object.keys(doc)).toEqual(["values"]);
    return doc.values;
}

// Shapes of Vault tokens (service/batch/recovery tokens, legacy `s.` service tokens) and
// of JWTs (base64url header "{\"..." and payload, dot-separated).
const VAULT_TOKEN_SHAPE = /\b(?:hvs|hvb|hvr)\.[A-Za-z0-9_-]{20,}|\bs\.[A-Za-z0-9]{24}\b/;
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}/;
const CREDENTIAL_KEY = /token|jwt/i;
// The only keys allowed to look like credentials, and what they may hold: the ESC
// login's method block (mount, role, subject attributes: names, not credentials) and the
// export of the token ESC produces when the environment is opened (an interpolation).
const LOGIN_JWT = "yaml.values.vault.login.fn::open::vault-login.jwt";
const TOKEN_EXPORT = "yaml.values.environmentVariables.VAULT_TOKEN";

/**
 * Every place in `value` that holds a Vault token or a JWT, or a key named like one
 * (other than the two ESC ones above, checked for what they hold). Strings that are
 * YAML documents are not special: the caller parses the environment's YAML and passes
 * it under `yaml`.
 */
function credentialFindings(value: unknown, at: string): string[] {
    const found: string[] = [];
    if (typeof value === "string") {
        if (VAULT_TOKEN_SHAPE.test(value)) found.push(`${at}: a Vault token`);
        if (JWT_SHAPE.test(value)) found.push(`${at}: a JWT`);
    } else if (Array.isArray(value)) {
        value.forEach((v, i) => found.push(...credentialFindings(v, `${at}[${i}]`)));
    } else if (typeof value === "object" && value !== null) {
        for (const [k, v] of Object.entries(value)) {
            const where = at === "" ? k : `${at}.${k}`;
            if (CREDENTIAL_KEY.test(k)) {
                if (where === LOGIN_JWT) {
                    const extra = Object.keys(v as object).filter((key) => !["mount", "role", "subjectAttributes"].includes(key));
                    if (extra.length > 0) found.push(`${where}: unexpected ${extra.join(", ")}`);
                } else if (where === TOKEN_EXPORT) {
                    if (v !== "${vault.login.token}") found.push(`${where}: not the ESC login's token`);
                } else {
                    found.push(`${where}: a key named like a credential`);
                }
            }
            found.push(...credentialFindings(v, where));
        }
    }
    return found;
}

/**
 * The credential findings of every input of `records`, each prefixed with the resource's
 * name; an environment's YAML is parsed and scanned as `yaml`.
 */
async function scanInputs(records: Registered[]): Promise<string[]> {
    const found: string[] = [];
    for (const r of records) {
        const inputs: Record<string, unknown> = { ...r.inputs };
        if (r.type === T.environment) inputs.yaml = yaml.load((await environmentYaml(r.inputs)).text);
        found.push(...credentialFindings(JSON.parse(JSON.stringify(inputs)), "").map((f) => `${r.name}: ${f}`));
    }
    return found;
}

/** A throwaway key of the right shape (generated here, never used anywhere). */
const FAKE_SSH_KEY = crypto.generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();

const stackConfig = readStackConfig(path.join(DEPLOY_DIR, "Pulumi.prod.yaml"));
/**
 * What Pulumi.prod.yaml is to switch to once the pack is published (its comment
 * names these lines): policyGroup mode with the pack policy/ publishes.
 */
const POLICY_GROUP: Record<string, string> = {
    policyEnforcement: "policyGroup",
    policyPackName: "vault-rotation-guardrails",
    policyPackVersion: "0.1.0",
};
const registered: Registered[] = [];
const configKeysRead = new Set<string>();
let outputs: Record<string, unknown> = {};
const warnings: string[] = [];

function setConfig(values: Record<string, string>): void {
    pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(values).map(([k, v]) => [`${PROJECT}:${k}`, v])));
}

function only(type: string, records: Registered[] = registered): Registered {
    const found = records.filter((r) => r.type === type);
    expect(found).toHaveLength(1);
    return found[0];
}

beforeAll(async () => {
    setConfig(stackConfig);
    await pulumi.runtime.setMocks(
        {
            newResource: (args) => {
                // The latest registration of this name (the config tests load the program again).
                const record = [...registered].reverse().find((r) => r.name === args.name && r.type === args.type);
                if (record) record.inputs = args.inputs;
                return { id: `${args.name}-id`, state: { ...args.inputs, scheduleId: `${args.name}-schedule-id` } };
            },
            call: () => ({}),
        },
        PROJECT,
        "prod",
        false,
    );
    // Dependencies (from `dependsOn`) are only visible on the register request: wrap the
    // mock monitor's registerResource to record them and the URN it hands back.
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource(req: RegisterRequest, cb: (err: unknown, res?: { getUrn(): string }) => void): Promise<void>;
    };
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, cb) => {
        const record: Registered = { type: req.getType(), name: req.getName(), inputs: {}, dependencies: req.getDependenciesList() };
        registered.push(record);
        return register(req, (err, res) => {
            if (res) record.urn = res.getUrn();
            cb(err, res);
        });
    };
    for (const method of ["get", "require", "getBoolean"] as const) {
        const original = pulumi.Config.prototype[method] as (this: pulumi.Config, key: string) => unknown;
        jest.spyOn(pulumi.Config.prototype, method).mockImplementation(function (this: pulumi.Config, key: string) {
            configKeysRead.add(key);
            return original.call(this, key);
        } as never);
    }
    jest.spyOn(pulumi.log, "warn").mockImplementation((message: string) => {
        warnings.push(message);
        return Promise.resolve();
    });
    const mod = require("../../deploy/index") as Record<string, unknown>;
    jest.restoreAllMocks();
    const resolved: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(mod)) resolved[k] = pulumi.Output.isInstance(v) ? await promiseOf(v) : v;
    outputs = resolved;
});

interface RegisterRequest {
    getType(): string;
    getName(): string;
    getDependenciesList(): string[];
}

/**
 * Runs `load` with console.warn silenced: a module registry isolated by jest has its
 * own @pulumi/pulumi, whose log.warn (the placeholder-CA warning) prints to the console
 * without an engine. The warning itself is checked on the first load, above.
 */
function quietly(load: () => void): void {
    const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
        load();
    } finally {
        warn.mockRestore();
    }
}

/** Loads deploy/index.ts afresh with `values`: what it registered and its outputs. */
async function loadModuleWith(values: Record<string, string>): Promise<{ records: Registered[]; outputs: Record<string, unknown> }> {
    setConfig(values);
    const before = registered.length;
    let mod: Record<string, unknown> = {};
    quietly(() =>
        jest.isolateModules(() => {
            mod = require("../../deploy/index");
        }),
    );
    const resolved: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(mod)) resolved[k] = pulumi.Output.isInstance(v) ? await promiseOf(v) : v;
    return { records: registered.slice(before), outputs: resolved };
}

/** Loads deploy/index.ts afresh with `values` and returns what it registered. */
async function loadWith(values: Record<string, string>): Promise<Registered[]> {
    return (await loadModuleWith(values)).records;
}

/** Pulumi.prod.yaml's values for a fleet: `stacks` (and any overrides) instead of `stack`. */
function fleetConfig(stacks: unknown, extra: Record<string, string> = {}): Record<string, string> {
    const values: Record<string, string> = { ...stackConfig, stacks: JSON.stringify(stacks), ...extra };
    delete values.stack;
    return values;
}

/** The target stack a registered resource is for, whatever the resource type calls it. */
function stackOf(r: Registered): string {
    const inputs = r.inputs as { stack?: string; name?: string; stackName?: string; stacks?: { name: string }[] };
    if (r.type === T.environment) return inputs.name!;
    if (r.type === T.webhook) return inputs.stackName!;
    if (r.type === T.policyGroup) return inputs.stacks![0].name;
    return inputs.stack!;
}

/** The one record of `type` for target stack `stack`. */
function onlyFor(type: string, stack: string, records: Registered[]): Registered {
    const found = records.filter((r) => r.type === type && stackOf(r) === stack);
    expect(found).toHaveLength(1);
    return found[0];
}

/** Scheduled-update and drift crons per target stack, as registered. */
function cronsOf(records: Registered[]): Record<string, [string, string]> {
    const out: Record<string, [string, string]> = {};
    for (const r of records.filter((x) => x.type === T.schedule)) out[stackOf(r)] = [r.inputs.scheduleCron as string, ""];
    for (const r of records.filter((x) => x.type === T.drift)) out[stackOf(r)][1] = r.inputs.scheduleCron as string;
    return out;
}

/** What an upgrade compares: URN, inputs (the environment's YAML as text) and dependencies, by URN. */
async function comparable(records: Registered[]): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const r of records) {
        const inputs: Record<string, unknown> = { ...r.inputs };
        if (r.type === T.environment) inputs.yaml = await environmentYaml(r.inputs);
        out[r.urn!] = { inputs: JSON.parse(JSON.stringify(inputs)) as unknown, dependencies: [...r.dependencies].sort() };
    }
    return out;
}

// The URNs of the one-stack (prod) deploy as they are in its state: spelled out, not
// derived from the program, so that a rename (which would delete and recreate the live
// schedule, environment and webhook) fails here.
const PROD_URNS = [
    "urn:pulumi:prod::vault-rotation-deploy::pulumiservice:index:DeploymentSettings::vault-rotation-prod-deployment-settings",
    "urn:pulumi:prod::vault-rotation-deploy::pulumiservice:index:Environment::vault-rotation-prod-environment",
    "urn:pulumi:prod::vault-rotation-deploy::pulumiservice:index:DeploymentSchedule::vault-rotation-prod-scheduled-update",
    "urn:pulumi:prod::vault-rotation-deploy::pulumiservice:index:DriftSchedule::vault-rotation-prod-drift-detection",
    "urn:pulumi:prod::vault-rotation-deploy::pulumiservice:index:Webhook::vault-rotation-prod-notifications",
];
const PROD_POLICY_GROUP_URN = "urn:pulumi:prod::vault-rotation-deploy::pulumiservice:index:PolicyGroup::vault-rotation-prod-policy-group";

describe("deploy/Pulumi.prod.yaml", () => {
    it("holds the production example values", () => {
        expect(stackConfig).toMatchObject({
            organization: "acme-platform",
            project: "vault-rotation",
            stack: "prod",
            repoUrl: "https://github.com/acme-platform/vault-rotation.git",
            branch: "main",
            scheduleCron: "0 3 * * *",
            driftCron: "0 6 * * *",
            driftAutoRemediate: "false",
            vaultAddress: "https://vault.prod.internal:8200",
            vaultJwtMount: "jwt",
            vaultJwtRole: "esc-vault-rotation-prod",
            vaultCaCertFile: "vault-listener-ca.pem",
            // The pack is not publishable yet (policy/package.json has no dependencies), so a
            // mandatory policy group would fail every run: the Deployments load policy/.
            policyEnforcement: "localPack",
        });
        // localPack needs no published pack: none is named (a stale one would mislead).
        expect(stackConfig).not.toHaveProperty("policyPackName");
        expect(stackConfig).not.toHaveProperty("policyPackVersion");
        // A secret never sits in the committed file: the ssh key is `pulumi config set --secret`.
        expect(stackConfig).not.toHaveProperty("sshPrivateKey");
        expect(fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.prod.yaml"), "utf8")).not.toMatch(/PRIVATE KEY|secure:/);
    });

    it("uses only keys that Pulumi.yaml declares, each with a type and a description", () => {
        const declared = readDeclaredConfig(path.join(DEPLOY_DIR, "Pulumi.yaml"));
        const used = new Set([...Object.keys(stackConfig), ...configKeysRead]);
        expect(configKeysRead.size).toBeGreaterThanOrEqual(18);
        for (const key of used) {
            expect(declared.has(key) ? key : `${key} (undeclared)`).toBe(key);
            // `stacks` alone is untyped: its entries are names or objects, and a declared
            // array type would make the CLI check every item against one type.
            if (key === "stacks") expect(declared.get(key)).not.toMatch(/^ {4}type:/m);
            else expect(declared.get(key)).toMatch(/^ {4}type: (string|boolean|integer)$/m);
            expect(declared.get(key)).toMatch(/^ {4}description: \S/m);
        }
        expect(fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.yaml"), "utf8")).toMatch(/^name: vault-rotation-deploy$/m);
    });

    it("gives every optional key a default, so the CLI does not demand it", () => {
        const declared = readDeclaredConfig(path.join(DEPLOY_DIR, "Pulumi.yaml"));
        for (const key of ["stack", "stacks", "stagger", "repoDir", "driftAutoRemediate", "agentPoolId", "executorImage", "vaultLoginAddress", "vaultJwtMount", "sshPrivateKey", "policyEnforcement", "policyPackName", "policyPackVersion"]) {
            expect(`${key}: ${declared.get(key)}`).toMatch(/^ {4}default: /m);
        }
        for (const key of ["vaultAddress", "vaultJwtRole", "vaultCaCertFile"]) {
            expect(`${key}: ${declared.get(key)}`).not.toMatch(/^ {4}default: /m);
        }
    });

    it("lets the CLI's config validation pass a stacks list of names and objects (the key is declared untyped)", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vr-deploy-"));
        try {
            const values: Record<string, unknown> = { ...stackConfig };
            delete values.stack;
            const fleetFile = path.join(dir, "Pulumi.fleet.yaml");
            const fleet = { ...values, stacks: ["prod-a", { stack: "prod-b", vaultJwtRole: "esc-vault-rotation-prod-b" }], stagger: "20m" };
            fs.writeFileSync(fleetFile, yaml.dump({ config: Object.fromEntries(Object.entries(fleet).map(([k, v]) => [`${PROJECT}:${k}`, v])) }));
            expect(cliConfigVerdict(path.join(DEPLOY_DIR, "Pulumi.yaml"), fleetFile, "fleet")).toBe("");
            expect(cliConfigVerdict(path.join(DEPLOY_DIR, "Pulumi.yaml"), path.join(DEPLOY_DIR, "Pulumi.prod.yaml"), "prod")).toBe("");
            // Declared as an array of objects, the bare name would fail the CLI's check.
            const project = fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.yaml"), "utf8").replace(/(\n {2}vault-rotation-deploy:stacks:\n)/, "$1    type: array\n    items:\n      type: object\n");
            expect(project).toMatch(/stacks:\n {4}type: array\n/);
            fs.writeFileSync(path.join(dir, "Pulumi.yaml"), project);
            expect(cliConfigVerdict(path.join(dir, "Pulumi.yaml"), fleetFile, "fleet")).toBe("Stack 'fleet' with configuration key 'vault-rotation-deploy:stacks' must be of type 'array'");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("names, for the switch to a policy group, the policy pack and version that policy/ publishes", () => {
        const packName = /export const PACK_NAME = "([^"]+)"/.exec(fs.readFileSync(path.join(REPO_DIR, "policy", "index.ts"), "utf8"))?.[1];
        const packVersion = (JSON.parse(fs.readFileSync(path.join(REPO_DIR, "policy", "package.json"), "utf8")) as { version: string }).version;
        expect(packName).toBe("vault-rotation-guardrails");
        expect(POLICY_GROUP.policyPackName).toBe(packName);
        expect(POLICY_GROUP.policyPackVersion).toBe(packVersion);
        // The commented-out lines that Pulumi.prod.yaml says to switch to are these values.
        const commented: Record<string, string> = {};
        for (const line of fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.prod.yaml"), "utf8").split("\n")) {
            const m = /^\s*#\s*vault-rotation-deploy:(policy\w+):\s*(.*?)\s*$/.exec(line);
            if (m) commented[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
        }
        expect(commented).toEqual(POLICY_GROUP);
    });

    it("agrees with each listed stack's file in the repository: the same vault:address, no other stack's environment, and nothing that would shadow its own", () => {
        const perStack = outputs.stacks as Record<string, { escEnvironment: string }>;
        const found: string[] = [];
        for (const [stack, declared] of Object.entries(perStack)) {
            const targetFile = path.join(REPO_DIR, `Pulumi.${stack}.yaml`);
            if (!fs.existsSync(targetFile)) continue;
            found.push(stack);
            const target = loadStackConfig(targetFile);
            // Explicit stack config wins over an imported environment's pulumiConfig.
            if (target["vault:address"] !== undefined) expect(target["vault:address"]).toBe(stackConfig.vaultAddress);
            const doc = yaml.load(fs.readFileSync(targetFile, "utf8")) as { environment?: string[] };
            // The environment declared for it is `<project>/<stack>` (README.md); a shard that
            // imported another's would log in with that stack's role.
            const imported = (doc.environment ?? []).filter((e) => e.startsWith(`${stackConfig.project}/`));
            expect(imported.filter((e) => e !== declared.escEnvironment)).toEqual([]);
            if (imported.includes(declared.escEnvironment)) {
                // The CA file then comes from VAULT_CACERT; a vault:caCertFile would win over it.
                expect(target).not.toHaveProperty("vault:caCertFile");
            }
        }
        expect(found).toContain("prod");
        expect((yaml.load(fs.readFileSync(path.join(REPO_DIR, "Pulumi.prod.yaml"), "utf8")) as { environment?: string[] }).environment).toContain("vault-rotation/prod");
    });
});

/** Whether one 5-field cron field (`*`, `n`, `a-b`, lists, `/step`) matches `value`. */
function cronFieldMatches(field: string, value: number, min: number, max: number): boolean {
    return field.split(",").some((part) => {
        const [range, stepText] = part.split("/");
        const step = stepText === undefined ? 1 : Number(stepText);
        const [lo, hi] = range === "*" ? [min, max] : range.includes("-") ? range.split("-").map(Number) : [Number(range), stepText === undefined ? Number(range) : max];
        return value >= lo && value <= hi && (value - lo) % step === 0;
    });
}

/** The longest gap, in seconds, between two runs of a cron schedule (UTC), over four weeks. */
function longestCronGapSeconds(cron: string): number {
    const [minute, hour, dom, month, dow] = cron.trim().split(/\s+/);
    const start = Date.UTC(2026, 0, 5); // a Monday
    let last: number | undefined;
    let longest = 0;
    for (let t = start; t < start + 28 * 86400_000; t += 60_000) {
        const d = new Date(t);
        const domRestricted = dom !== "*";
        const dowRestricted = dow !== "*";
        const dayOk =
            domRestricted && dowRestricted
                ? cronFieldMatches(dom, d.getUTCDate(), 1, 31) || cronFieldMatches(dow, d.getUTCDay(), 0, 6)
                : cronFieldMatches(dom, d.getUTCDate(), 1, 31) && cronFieldMatches(dow, d.getUTCDay(), 0, 6);
        if (cronFieldMatches(minute, d.getUTCMinutes(), 0, 59) && cronFieldMatches(hour, d.getUTCHours(), 0, 23) && dayOk && cronFieldMatches(month, d.getUTCMonth() + 1, 1, 12)) {
            if (last !== undefined) longest = Math.max(longest, (t - last) / 1000);
            last = t;
        }
    }
    return longest;
}

describe("the schedule keeps the target stack's promise", () => {
    it("computes cron gaps", () => {
        expect(longestCronGapSeconds("0 3 * * 1")).toBe(7 * 86400);
        expect(longestCronGapSeconds("0 3 * * *")).toBe(86400);
        expect(longestCronGapSeconds("0 */6 * * *")).toBe(6 * 3600);
        expect(longestCronGapSeconds("0 3 * * 1-5")).toBe(3 * 86400);
    });

    it("runs every listed stack whose file is in the repository at least as often as its rotation.runInterval (agent certs cannot lapse between runs)", () => {
        const perStack = outputs.stacks as Record<string, { scheduleCron: string }>;
        const checkedStacks: string[] = [];
        for (const [stack, declared] of Object.entries(perStack)) {
            const file = path.join(REPO_DIR, `Pulumi.${stack}.yaml`);
            if (!fs.existsSync(file)) continue;
            const runInterval = JSON.parse(loadStackConfig(file)["vault-rotation:rotation"]).runInterval as string;
            expect(longestCronGapSeconds(declared.scheduleCron)).toBeLessThanOrEqual(durationSeconds(runInterval));
            checkedStacks.push(`${stack}: ${runInterval}`);
        }
        expect(checkedStacks).toEqual(["prod: 24h"]);
        expect(perStack.prod.scheduleCron).toBe(stackConfig.scheduleCron);
    });

    it("keeps a cron's gaps when it is staggered, across midnight too", () => {
        for (const [base, shifted] of [
            ["50 23 * * *", "10 0 * * *"],
            ["0 3 * * *", "40 3 * * *"],
            ["50 * * * *", "10 * * * *"],
        ]) {
            expect(longestCronGapSeconds(shifted)).toBe(longestCronGapSeconds(base));
        }
    });
});

describe("deploy/index.ts", () => {
    it("registers one each of settings, ESC environment, schedule, drift schedule and notification webhook, and no policy group (localPack)", () => {
        expect(registered.map((r) => r.type).sort()).toEqual([T.settings, T.environment, T.schedule, T.drift, T.webhook].sort());
    });

    it("posts the target stack's failed updates, refreshes and Deployments, and detected drift, to notifyUrl, kept secret", () => {
        const hook = only(T.webhook).inputs;
        expect(hook).toMatchObject({ organizationName: "acme-platform", projectName: "vault-rotation", stackName: "prod", active: true, format: "raw" });
        expect([...(hook.filters as string[])].sort()).toEqual(["deployment_failed", "drift_detected", "refresh_failed", "update_failed"]);
        expect(isSecretWrapper(hook.payloadUrl)).toBe(true);
        expect((hook.payloadUrl as { value: unknown }).value).toBe(stackConfig.notifyUrl);
        expect(hook.secret).toBeUndefined();
        expect(warnings.some((w) => /vault-rotation-deploy:notifyUrl is still the placeholder/.test(w))).toBe(true);
    });

    it("points the DeploymentSettings at the target stack's git source, with `npm ci` as the only pre-run step", () => {
        const s = only(T.settings).inputs as {
            organization: string;
            project: string;
            stack: string;
            sourceContext: { git: { repoUrl: string; branch: string; repoDir: string } };
            operationContext: { preRunCommands: string[]; environmentVariables?: Record<string, string>; options: Record<string, unknown> };
        };
        expect([s.organization, s.project, s.stack]).toEqual(["acme-platform", "vault-rotation", "prod"]);
        expect(s.sourceContext.git).toEqual({ repoUrl: "https://github.com/acme-platform/vault-rotation.git", branch: "main", repoDir: "." });
        expect(s.operationContext.preRunCommands).toEqual(["npm ci"]);
        // `npm ci` replaces the default install step rather than running after it.
        expect(s.operationContext.options.skipInstallDependencies).toBe(true);
    });

    it("sets no Vault variable in the settings, refreshes before every update, loads the repository's pack, and needs no image for the CA", () => {
        const s = only(T.settings).inputs as { operationContext: Record<string, unknown> & { environmentVariables?: Record<string, string> }; executorContext?: unknown };
        // Continue past one app's failure; `--refresh` for every update and `--policy-pack
        // policy` (the pack's path from repoDir `.`) for every preview and update (the CLI
        // reads PULUMI_OPTION_<FLAG>). The program is type-checked before it runs (the repository's
        // tsconfig turns ts-node's check off for operators' runs). No VAULT_*: the imported ESC environment provides them.
        expect(s.operationContext.environmentVariables).toEqual({
            PULUMI_CONTINUE_ON_ERROR: "true",
            PULUMI_OPTION_REFRESH: "true",
            PULUMI_NODEJS_TRANSPILE_ONLY: "false",
            PULUMI_OPTION_POLICY_PACK: "policy",
        });
        // The SDK's oidc options are cloud-only; the Vault login is ESC's.
        expect(s.operationContext.oidc).toBeUndefined();
        expect(s.executorContext).toBeUndefined();
    });

    it("runs operator previews without checkpoints and never an update (package.json scripts); the Deployment keeps them", () => {
        const scripts = (JSON.parse(fs.readFileSync(path.join(REPO_DIR, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
        expect(scripts.preview).toBe("PULUMI_SKIP_CHECKPOINTS=true pulumi preview");
        expect(scripts.drift).toBe("PULUMI_SKIP_CHECKPOINTS=true pulumi refresh --preview-only");
        for (const command of Object.values(scripts).filter((c) => c.includes("PULUMI_SKIP_CHECKPOINTS"))) {
            expect(command).not.toMatch(/pulumi (up|update|destroy)\b|refresh(?! --preview-only)/);
        }
        // Settings apply to every operation of the stack, the scheduled `pulumi up` included.
        const env = (only(T.settings).inputs as { operationContext: { environmentVariables?: Record<string, string> } }).operationContext.environmentVariables ?? {};
        expect(env).not.toHaveProperty("PULUMI_SKIP_CHECKPOINTS");
    });

    it("declares the ESC environment <project>/<stack> in the target's organization", () => {
        const env = only(T.environment).inputs;
        expect({ organization: env.organization, project: env.project, name: env.name }).toEqual({ organization: "acme-platform", project: "vault-rotation", name: "prod" });
        expect(outputs.escEnvironment).toBe("vault-rotation/prod");
    });

    it("logs in with ESC's vault-login (jwt, mount and role from config, subject naming the environment) and exports its token as VAULT_TOKEN", async () => {
        const values = await environmentValues(only(T.environment).inputs);
        expect(Object.keys(values).sort()).toEqual(["environmentVariables", "files", "pulumiConfig", "vault"]);
        expect(values.vault.login).toEqual({
            "fn::open::vault-login": {
                address: "https://vault.prod.internal:8200",
                jwt: { mount: "jwt", role: "esc-vault-rotation-prod", subjectAttributes: ["currentEnvironment.name"] },
            },
        });
        expect(values.environmentVariables).toEqual({ VAULT_ADDR: "https://vault.prod.internal:8200", VAULT_TOKEN: "${vault.login.token}" });
    });

    it("exports the listener CA as the file VAULT_CACERT: the certificate blocks of vaultCaCertFile, nothing else", async () => {
        const values = await environmentValues(only(T.environment).inputs);
        expect(Object.keys(values.files)).toEqual(["VAULT_CACERT"]);
        const pem = values.files.VAULT_CACERT;
        const committed = fs.readFileSync(path.join(DEPLOY_DIR, "vault-listener-ca.pem"), "utf8");
        const blocks = committed.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
        expect(blocks.length).toBeGreaterThanOrEqual(1);
        expect(pem).toBe(blocks.join("\n") + "\n");
        // The file's comment lines stay here; each block is a certificate.
        expect(pem).not.toMatch(/#|PLACEHOLDER -/);
        expect(new crypto.X509Certificate(pem).subject).toMatch(/CN=/);
    });

    it("warns while vaultCaCertFile is still the placeholder", () => {
        expect(warnings.some((w) => /vault-rotation-deploy:vaultCaCertFile: vault-listener-ca\.pem is still the placeholder CA/.test(w))).toBe(true);
    });

    it("exports vault:address as stack config and, with no ssh key configured, nothing secret", async () => {
        const env = only(T.environment).inputs;
        const values = await environmentValues(env);
        expect(values.pulumiConfig).toEqual({ "vault:address": "https://vault.prod.internal:8200" });
        expect((await environmentYaml(env)).secret).toBe(false);
    });

    it("schedules a `pulumi up` on the configured cron, after the settings and the environment exist", () => {
        const schedule = only(T.schedule);
        expect(schedule.inputs).toMatchObject({
            organization: "acme-platform",
            project: "vault-rotation",
            stack: "prod",
            pulumiOperation: "update",
            scheduleCron: "0 3 * * *",
        });
        expect(schedule.inputs.timestamp).toBeUndefined();
        for (const type of [T.settings, T.environment]) expect(only(type).urn).toBeDefined();
        expect([...schedule.dependencies].sort()).toEqual([only(T.settings).urn, only(T.environment).urn].sort());
    });

    it("detects drift on the drift cron without auto-remediation, after the same two", () => {
        const drift = only(T.drift);
        expect(drift.inputs).toMatchObject({ stack: "prod", scheduleCron: "0 6 * * *", autoRemediate: false });
        expect([...drift.dependencies].sort()).toEqual([only(T.settings).urn, only(T.environment).urn].sort());
    });

    it("exports the target stack, the environment reference, that there is no policy group, and the schedule ids", () => {
        expect(outputs).toEqual({
            targetStack: "acme-platform/vault-rotation/prod",
            escEnvironment: "vault-rotation/prod",
            policyGroupName: "(none: policyEnforcement localPack)",
            notificationWebhook: "vault-rotation-prod: failed runs and drift",
            deploymentScheduleId: `${only(T.schedule).name}-schedule-id`,
            driftScheduleId: `${only(T.drift).name}-schedule-id`,
            stacks: {
                prod: {
                    targetStack: "acme-platform/vault-rotation/prod",
                    escEnvironment: "vault-rotation/prod",
                    vaultJwtRole: "esc-vault-rotation-prod",
                    scheduleCron: "0 3 * * *",
                    driftCron: "0 6 * * *",
                    policyGroupName: "(none: policyEnforcement localPack)",
                    notificationWebhook: "vault-rotation-prod: failed runs and drift",
                    deploymentScheduleId: `${only(T.schedule).name}-schedule-id`,
                    driftScheduleId: `${only(T.drift).name}-schedule-id`,
                },
            },
        });
    });

    it("finds a planted token, JWT or credential key (the scanner below can fail)", () => {
        const jwt = `eyJ${"a".repeat(20)}.eyJ${"b".repeat(20)}.sig`;
        expect(credentialFindings({ a: { b: [`x hvs.${"A".repeat(24)} y`] } }, "")).toEqual(["a.b[0]: a Vault token"]);
        expect(credentialFindings({ env: `s.${"x".repeat(24)}` }, "")).toEqual(["env: a Vault token"]);
        expect(credentialFindings({ note: jwt }, "")).toEqual(["note: a JWT"]);
        expect(credentialFindings({ operationContext: { environmentVariables: { VAULT_TOKEN: "x" } } }, "")).toEqual(["operationContext.environmentVariables.VAULT_TOKEN: a key named like a credential"]);
        expect(credentialFindings({ yaml: { values: { environmentVariables: { VAULT_TOKEN: "hard-coded" } } } }, "")).toEqual([`${TOKEN_EXPORT}: not the ESC login's token`]);
        expect(credentialFindings({ yaml: { values: { vault: { login: { "fn::open::vault-login": { jwt: { role: "r", jwt: "x" } } } } } } }, "")).toEqual([
            `${LOGIN_JWT}: unexpected jwt`,
            `${LOGIN_JWT}.jwt: a key named like a credential`,
        ]);
        // What the ESC login block legitimately holds passes.
        expect(
            credentialFindings(
                { yaml: { values: { vault: { login: { "fn::open::vault-login": { address: "https://vault.prod.internal:8200", jwt: { mount: "jwt", role: "esc-vault-rotation-prod", subjectAttributes: ["currentEnvironment.name"] } } } }, environmentVariables: { VAULT_TOKEN: "${vault.login.token}" } } } },
                "",
            ),
        ).toEqual([]);
    });

    it("holds no Vault token or JWT in any resource input, and no credential-named key but the ESC login's", async () => {
        expect(await scanInputs(registered)).toEqual([]);
        // No git credentials: the source is fetched through the org's VCS integration or a public URL.
        expect(JSON.stringify(registered.map((r) => r.inputs))).not.toMatch(/gitAuth|password|PRIVATE KEY-----/);
    });
});

describe("deploy/index.ts in policyGroup mode (Pulumi.prod.yaml's values with POLICY_GROUP)", () => {
    let records: Registered[] = [];
    let groupOutputs: Record<string, unknown> = {};
    beforeAll(async () => {
        ({ records, outputs: groupOutputs } = await loadModuleWith({ ...stackConfig, ...POLICY_GROUP }));
    });
    afterAll(() => setConfig(stackConfig));

    it("registers one each of settings, ESC environment, policy group, schedule and drift schedule", () => {
        expect(records.map((r) => r.type).sort()).toEqual([T.settings, T.environment, T.policyGroup, T.schedule, T.drift, T.webhook].sort());
    });

    it("puts the target stack under the published pack with a preventative, all-mandatory policy group", () => {
        expect(only(T.policyGroup, records).inputs).toEqual({
            name: "vault-rotation-prod-guardrails",
            organizationName: "acme-platform",
            entityType: "stacks",
            mode: "preventative",
            stacks: [{ name: "prod", routingProject: "vault-rotation" }],
            policyPacks: [{ name: "vault-rotation-guardrails", versionTag: "0.1.0", config: { all: "mandatory" } }],
        });
    });

    it("leaves the pack out of the settings: the group enforces it on every run", () => {
        const s = only(T.settings, records).inputs as { operationContext: { environmentVariables?: Record<string, string> } };
        expect(s.operationContext.environmentVariables).toEqual({ PULUMI_CONTINUE_ON_ERROR: "true", PULUMI_OPTION_REFRESH: "true", PULUMI_NODEJS_TRANSPILE_ONLY: "false" });
    });

    it("schedules a `pulumi up` on the configured cron, after the settings, the environment and the policy group exist", () => {
        const schedule = only(T.schedule, records);
        expect(schedule.inputs).toMatchObject({ stack: "prod", pulumiOperation: "update", scheduleCron: "0 3 * * *" });
        for (const type of [T.settings, T.environment, T.policyGroup]) {
            expect(only(type, records).urn).toBeDefined();
            expect(schedule.dependencies).toContain(only(type, records).urn);
        }
    });

    it("detects drift on the drift cron without auto-remediation, after the same three", () => {
        const drift = only(T.drift, records);
        expect(drift.inputs).toMatchObject({ stack: "prod", scheduleCron: "0 6 * * *", autoRemediate: false });
        for (const type of [T.settings, T.environment, T.policyGroup]) expect(drift.dependencies).toContain(only(type, records).urn);
    });

    it("exports the target stack, the environment reference, the policy group and the schedule ids", () => {
        expect(groupOutputs).toEqual({
            targetStack: "acme-platform/vault-rotation/prod",
            escEnvironment: "vault-rotation/prod",
            policyGroupName: "vault-rotation-prod-guardrails",
            notificationWebhook: "vault-rotation-prod: failed runs and drift",
            deploymentScheduleId: `${only(T.schedule, records).name}-schedule-id`,
            driftScheduleId: `${only(T.drift, records).name}-schedule-id`,
            stacks: {
                prod: expect.objectContaining({ policyGroupName: "vault-rotation-prod-guardrails", deploymentScheduleId: `${only(T.schedule, records).name}-schedule-id` }),
            },
        });
    });

    it("holds no Vault token or JWT in any resource input, and no credential-named key but the ESC login's", async () => {
        expect(await scanInputs(records)).toEqual([]);
    });
});

describe("deploy/index.ts with an ssh key, and in localPack mode", () => {
    afterAll(() => setConfig(stackConfig));

    it("exports a configured ssh key as the target's vault-rotation:sshPrivateKey, and the environment's YAML is then a secret", async () => {
        const fresh = await loadWith({ ...stackConfig, sshPrivateKey: FAKE_SSH_KEY });
        const env = only(T.environment, fresh).inputs;
        const { secret } = await environmentYaml(env);
        expect(secret).toBe(true);
        const values = await environmentValues(env);
        expect(values.pulumiConfig).toEqual({
            "vault:address": "https://vault.prod.internal:8200",
            "vault-rotation:sshPrivateKey": { "fn::secret": FAKE_SSH_KEY },
        });
        // The key is nowhere else, and nowhere outside the secret.
        const others = fresh.filter((r) => r.type !== T.environment);
        expect(JSON.stringify(others.map((r) => r.inputs))).not.toContain("PRIVATE KEY");
        expect(await scanInputs(fresh)).toEqual([]);
    });

    it("loads the pack from the repository instead of a policy group in localPack mode", async () => {
        const fresh = await loadWith({ ...stackConfig, policyEnforcement: "localPack", policyPackName: "", policyPackVersion: "" });
        expect(fresh.filter((r) => r.type === T.policyGroup)).toEqual([]);
        const s = only(T.settings, fresh).inputs as { operationContext: { environmentVariables: Record<string, string> } };
        expect(s.operationContext.environmentVariables).toEqual({ PULUMI_CONTINUE_ON_ERROR: "true", PULUMI_OPTION_REFRESH: "true", PULUMI_NODEJS_TRANSPILE_ONLY: "false", PULUMI_OPTION_POLICY_PACK: "policy" });
        const schedule = only(T.schedule, fresh);
        expect(schedule.dependencies).toEqual(expect.arrayContaining([only(T.settings, fresh).urn, only(T.environment, fresh).urn]));
        expect(schedule.dependencies).toHaveLength(2);
    });

    it("points the local pack path at policy/ from the program's directory", async () => {
        const fresh = await loadWith({ ...stackConfig, policyEnforcement: "localPack", repoDir: "programs/rotation" });
        const s = only(T.settings, fresh).inputs as { operationContext: { environmentVariables: Record<string, string> } };
        expect(s.operationContext.environmentVariables.PULUMI_OPTION_POLICY_PACK).toBe("../../policy");
    });

    it("uses vaultLoginAddress for the ESC login only", async () => {
        const fresh = await loadWith({ ...stackConfig, vaultLoginAddress: "https://vault-login.prod.example.com" });
        const values = await environmentValues(only(T.environment, fresh).inputs);
        expect(values.vault.login["fn::open::vault-login"].address).toBe("https://vault-login.prod.example.com");
        expect(values.environmentVariables.VAULT_ADDR).toBe("https://vault.prod.internal:8200");
        expect(values.pulumiConfig["vault:address"]).toBe("https://vault.prod.internal:8200");
    });
});

// Three shards: one with its own role, one with its own role and ssh key, and a bare name
// (the top-level vaultJwtRole, esc-vault-rotation-prod, which no other entry uses).
const FLEET = [
    { stack: "prod-a", vaultJwtRole: "esc-vault-rotation-prod-a" },
    { stack: "prod-b", vaultJwtRole: "esc-vault-rotation-prod-b", sshPrivateKey: FAKE_SSH_KEY },
    "prod-c",
];
const FLEET_STACKS = ["prod-a", "prod-b", "prod-c"];

describe("deploy/index.ts for a sharded fleet (stacks, stagger 20m)", () => {
    let records: Registered[] = [];
    let fleetOutputs: Record<string, unknown> = {};
    beforeAll(async () => {
        ({ records, outputs: fleetOutputs } = await loadModuleWith(fleetConfig(FLEET, { stagger: "20m" })));
    });
    afterAll(() => setConfig(stackConfig));

    it("registers settings, environment, both schedules and the webhook for each stack, under names of its own", () => {
        expect(records).toHaveLength(5 * FLEET_STACKS.length);
        for (const stack of FLEET_STACKS) {
            const mine = records.filter((r) => stackOf(r) === stack);
            expect(mine.map((r) => r.name).sort()).toEqual(
                ["deployment-settings", "drift-detection", "environment", "notifications", "scheduled-update"].map((n) => `vault-rotation-${stack}-${n}`),
            );
            expect(mine.map((r) => r.type).sort()).toEqual([T.settings, T.environment, T.schedule, T.drift, T.webhook].sort());
        }
        expect(new Set(records.map((r) => r.urn)).size).toBe(records.length);
    });

    it("points each stack's settings, schedules and webhook at that stack of the target project", () => {
        for (const stack of FLEET_STACKS) {
            for (const type of [T.settings, T.schedule, T.drift]) {
                expect(onlyFor(type, stack, records).inputs).toMatchObject({ organization: "acme-platform", project: "vault-rotation", stack });
            }
            const settings = onlyFor(T.settings, stack, records).inputs as { sourceContext: unknown; operationContext: { environmentVariables: Record<string, string> } };
            expect(settings.sourceContext).toEqual({ git: { repoUrl: stackConfig.repoUrl, branch: "main", repoDir: "." } });
            expect(settings.operationContext.environmentVariables).toEqual({ PULUMI_CONTINUE_ON_ERROR: "true", PULUMI_OPTION_REFRESH: "true", PULUMI_NODEJS_TRANSPILE_ONLY: "false", PULUMI_OPTION_POLICY_PACK: "policy" });
            expect(onlyFor(T.schedule, stack, records).inputs.pulumiOperation).toBe("update");
            expect(onlyFor(T.drift, stack, records).inputs.autoRemediate).toBe(false);
        }
    });

    it("makes each stack's schedules wait for its own settings and environment, not another stack's", () => {
        for (const stack of FLEET_STACKS) {
            const own = [onlyFor(T.settings, stack, records).urn, onlyFor(T.environment, stack, records).urn].sort();
            for (const type of [T.schedule, T.drift]) expect([...onlyFor(type, stack, records).dependencies].sort()).toEqual(own);
        }
    });

    it("staggers the shared crons by 20 minutes per stack, in list order", () => {
        expect(cronsOf(records)).toEqual({
            "prod-a": ["0 3 * * *", "0 6 * * *"],
            "prod-b": ["20 3 * * *", "20 6 * * *"],
            "prod-c": ["40 3 * * *", "40 6 * * *"],
        });
    });

    it("declares the ESC environment <project>/<stack> for each, logging in with that stack's JWT role", async () => {
        const roles: Record<string, string> = {};
        for (const stack of FLEET_STACKS) {
            const env = onlyFor(T.environment, stack, records).inputs;
            expect({ organization: env.organization, project: env.project, name: env.name }).toEqual({ organization: "acme-platform", project: "vault-rotation", name: stack });
            const values = await environmentValues(env);
            roles[stack] = values.vault.login["fn::open::vault-login"].jwt.role as string;
            expect(values.environmentVariables).toEqual({ VAULT_ADDR: stackConfig.vaultAddress, VAULT_TOKEN: "${vault.login.token}" });
        }
        expect(roles).toEqual({ "prod-a": "esc-vault-rotation-prod-a", "prod-b": "esc-vault-rotation-prod-b", "prod-c": "esc-vault-rotation-prod" });
    });

    it("hands prod-b's own ssh key to prod-b's environment only, which alone is then a secret", async () => {
        const secret: Record<string, boolean> = {};
        for (const stack of FLEET_STACKS) secret[stack] = (await environmentYaml(onlyFor(T.environment, stack, records).inputs)).secret;
        expect(secret).toEqual({ "prod-a": false, "prod-b": true, "prod-c": false });
        expect((await environmentValues(onlyFor(T.environment, "prod-b", records).inputs)).pulumiConfig["vault-rotation:sshPrivateKey"]).toEqual({ "fn::secret": FAKE_SSH_KEY });
        for (const stack of ["prod-a", "prod-c"]) expect((await environmentValues(onlyFor(T.environment, stack, records).inputs)).pulumiConfig).toEqual({ "vault:address": stackConfig.vaultAddress });
        expect(JSON.stringify(records.filter((r) => r.type !== T.environment).map((r) => r.inputs))).not.toContain("PRIVATE KEY");
        expect(await scanInputs(records)).toEqual([]);
    });

    it("posts each stack's failed runs and drift to the one notifyUrl, kept secret", () => {
        for (const stack of FLEET_STACKS) {
            const hook = onlyFor(T.webhook, stack, records).inputs;
            expect(hook).toMatchObject({ organizationName: "acme-platform", projectName: "vault-rotation", stackName: stack, displayName: `vault-rotation-${stack}: failed runs and drift`, active: true, format: "raw" });
            expect([...(hook.filters as string[])].sort()).toEqual(["deployment_failed", "drift_detected", "refresh_failed", "update_failed"]);
            expect(isSecretWrapper(hook.payloadUrl) && hook.payloadUrl.value).toBe(stackConfig.notifyUrl);
        }
    });

    it("exports each stack under `stacks`, and no one-stack outputs", () => {
        for (const key of ["targetStack", "escEnvironment", "policyGroupName", "notificationWebhook", "deploymentScheduleId", "driftScheduleId"]) expect(fleetOutputs[key]).toBeUndefined();
        const perStack = fleetOutputs.stacks as Record<string, Record<string, unknown>>;
        expect(Object.keys(perStack)).toEqual(FLEET_STACKS);
        expect(perStack["prod-c"]).toEqual({
            targetStack: "acme-platform/vault-rotation/prod-c",
            escEnvironment: "vault-rotation/prod-c",
            vaultJwtRole: "esc-vault-rotation-prod",
            scheduleCron: "40 3 * * *",
            driftCron: "40 6 * * *",
            policyGroupName: "(none: policyEnforcement localPack)",
            notificationWebhook: "vault-rotation-prod-c: failed runs and drift",
            deploymentScheduleId: "vault-rotation-prod-c-scheduled-update-schedule-id",
            driftScheduleId: "vault-rotation-prod-c-drift-detection-schedule-id",
        });
    });

    it("runs every stack at the same time without a stagger (0, or unset)", async () => {
        for (const stagger of ["0", undefined]) {
            const values = fleetConfig(FLEET, stagger === undefined ? {} : { stagger });
            const crons = cronsOf(await loadWith(values));
            for (const stack of FLEET_STACKS) expect(crons[stack]).toEqual(["0 3 * * *", "0 6 * * *"]);
        }
    });

    it.each([
        ["a shift past midnight", "50 23 * * *", "55 23 * * *", "20m", [["50 23 * * *", "55 23 * * *"], ["10 0 * * *", "15 0 * * *"], ["30 0 * * *", "35 0 * * *"]]],
        ["minutes carrying into the hour", "45 2 * * *", "0 6 * * 1-5", "25m", [["45 2 * * *", "0 6 * * 1-5"], ["10 3 * * *", "25 6 * * 1-5"], ["35 3 * * *", "50 6 * * 1-5"]]],
        ["hours and minutes", "0 3 * * *", "30 22 * * *", "1h30m", [["0 3 * * *", "30 22 * * *"], ["30 4 * * *", "0 0 * * *"], ["0 6 * * *", "30 1 * * *"]]],
        ["an hourly cron", "50 * * * *", "5 */6 * * *", "15m", [["50 * * * *", "5 */6 * * *"], ["5 * * * *", "5 */6 * * *"], ["20 * * * *", "5 */6 * * *"]]],
    ])("shifts %s right (%s / %s, stagger %s)", async (_what, scheduleCron, driftCron, stagger, expected) => {
        // The hourly case: each stack keeps the drift cron it names itself (not staggered).
        const own = driftCron.includes("/") ? FLEET.map((e) => ({ ...(typeof e === "string" ? { stack: e } : e), driftCron })) : FLEET;
        const crons = cronsOf(await loadWith(fleetConfig(own, { scheduleCron, driftCron, stagger })));
        expect(FLEET_STACKS.map((s) => crons[s])).toEqual(expected);
    });

    it("uses an entry's own crons as they are, and staggers the others by their place in the list", async () => {
        const entries = [FLEET[0], { stack: "prod-b", vaultJwtRole: "esc-vault-rotation-prod-b", scheduleCron: "15 1 * * *" }, FLEET[2]];
        expect(cronsOf(await loadWith(fleetConfig(entries, { stagger: "20m" })))).toEqual({
            "prod-a": ["0 3 * * *", "0 6 * * *"],
            "prod-b": ["15 1 * * *", "20 6 * * *"],
            "prod-c": ["40 3 * * *", "40 6 * * *"],
        });
    });

    it("gives each stack its own policy group in policyGroup mode, and its schedules wait for it", async () => {
        const fresh = await loadWith(fleetConfig(FLEET, { ...POLICY_GROUP, stagger: "20m" }));
        for (const stack of FLEET_STACKS) {
            const group = onlyFor(T.policyGroup, stack, fresh);
            expect(group.name).toBe(`vault-rotation-${stack}-policy-group`);
            expect(group.inputs).toMatchObject({ name: `vault-rotation-${stack}-guardrails`, stacks: [{ name: stack, routingProject: "vault-rotation" }] });
            for (const type of [T.schedule, T.drift]) expect(onlyFor(type, stack, fresh).dependencies).toContain(group.urn);
        }
    });
});

describe("deploy/index.ts keeps the one-stack deploy's resources as they are (no delete and recreate on upgrade)", () => {
    afterAll(() => setConfig(stackConfig));

    it("registers exactly the URNs the prod deploy has always had, from `stack: prod`", () => {
        expect(registered.slice(0, 5).map((r) => r.urn).sort()).toEqual([...PROD_URNS].sort());
    });

    it("and in policyGroup mode, the same plus the policy group's", async () => {
        const fresh = await loadWith({ ...stackConfig, ...POLICY_GROUP });
        expect(fresh.map((r) => r.urn).sort()).toEqual([...PROD_URNS, PROD_POLICY_GROUP_URN].sort());
    });

    it.each([
        ["stacks: [prod]", ["prod"]],
        ["stacks: [{stack: prod}]", [{ stack: "prod" }]],
        ["stacks: [{stack: prod, vaultJwtRole: <the top-level one>}], stagger 20m", [{ stack: "prod", vaultJwtRole: "esc-vault-rotation-prod" }]],
    ])("%s registers the same URNs, inputs and dependencies as stack: prod", async (_what, list) => {
        const before = await comparable(await loadWith(stackConfig));
        const after = await comparable(await loadWith(fleetConfig(list, { stagger: "20m" })));
        expect(Object.keys(after).sort()).toEqual([...PROD_URNS].sort());
        expect(after).toEqual(before);
    });

    it("loads the fleet Pulumi.prod.yaml shows, commented out: prod as stacks[0] as it is, the next stack 20 minutes later", async () => {
        const lines = fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.prod.yaml"), "utf8").split("\n");
        const start = lines.findIndex((l) => /^\s*# {3}vault-rotation-deploy:stacks:\s*$/.test(l));
        expect(start).toBeGreaterThan(0);
        const block: string[] = [];
        for (let i = start; i < lines.length && /^\s*# {3}/.test(lines[i]); i++) block.push(lines[i].replace(/^\s*# {3}/, ""));
        const example = yaml.load(block.join("\n")) as Record<string, unknown>;
        expect(Object.keys(example)).toEqual([`${PROJECT}:stacks`, `${PROJECT}:stagger`]);
        const list = example[`${PROJECT}:stacks`] as unknown[];
        const before = await comparable(await loadWith(stackConfig));
        const fresh = await loadWith(fleetConfig(list, { stagger: String(example[`${PROJECT}:stagger`]) }));
        const after = await comparable(fresh);
        expect(Object.keys(after)).toEqual(expect.arrayContaining(PROD_URNS));
        for (const urn of PROD_URNS) expect(after[urn]).toEqual(before[urn]);
        expect(cronsOf(fresh)).toEqual({ prod: ["0 3 * * *", "0 6 * * *"], "prod-b": ["20 3 * * *", "20 6 * * *"] });
    });

    it("keeps prod's resources as they are when prod becomes stacks[0] of a fleet", async () => {
        const before = await comparable(await loadWith(stackConfig));
        const fleet = await loadWith(fleetConfig(["prod", { stack: "prod-b", vaultJwtRole: "esc-vault-rotation-prod-b" }], { stagger: "20m" }));
        const after = await comparable(fleet);
        expect(Object.keys(after)).toEqual(expect.arrayContaining(PROD_URNS));
        for (const urn of PROD_URNS) expect(after[urn]).toEqual(before[urn]);
        expect(fleet.filter((r) => stackOf(r) === "prod-b")).toHaveLength(5);
        expect(cronsOf(fleet)["prod-b"]).toEqual(["20 3 * * *", "20 6 * * *"]);
    });
});

describe("deploy/index.ts config checks", () => {
    afterAll(() => setConfig(stackConfig));

    // A CA file that is not a CA (a key in it) or not a certificate at all, served to the
    // program by a readFileSync stub: no fixture is written into deploy/.
    const FIXTURES: Record<string, string> = {
        "with-key.pem": fs.readFileSync(path.join(DEPLOY_DIR, "vault-listener-ca.pem"), "utf8") + FAKE_SSH_KEY,
        "no-cert.pem": "# nothing here\n",
        "broken-cert.pem": "-----BEGIN CERTIFICATE-----\nTUlJQm5vdGFjZXJ0\n-----END CERTIFICATE-----\n",
        // A target stack file in the repository root that promises runs at most 30 minutes apart.
        "../Pulumi.prod-h1.yaml": "config:\n  vault-rotation:rotation:\n    runInterval: 30m\n",
    };

    function requireWith(values: Record<string, string>): void {
        setConfig(values);
        // The real module object: deploy/index.ts reads its readFileSync at call time.
        const realFs = require("fs") as typeof fs;
        const readFileSync = realFs.readFileSync;
        const stub = jest.spyOn(realFs, "readFileSync").mockImplementation(((file: fs.PathOrFileDescriptor, options?: unknown) => {
            const name = path.relative(DEPLOY_DIR, String(file));
            if (name in FIXTURES) return FIXTURES[name];
            return (readFileSync as (f: fs.PathOrFileDescriptor, o?: unknown) => string | Buffer)(file, options);
        }) as never);
        try {
            quietly(() => jest.isolateModules(() => require("../../deploy/index")));
        } finally {
            stub.mockRestore();
        }
    }

    it.each([
        ["scheduleCron", "weekly", /vault-rotation-deploy:scheduleCron must be a 5-field cron expression/],
        ["driftCron", "0 6 * *", /vault-rotation-deploy:driftCron must be a 5-field cron expression/],
        ["repoUrl", "git@github.com:acme-platform/vault-rotation.git", /vault-rotation-deploy:repoUrl must be an https:\/\/ git URL/],
        ["branch", "main; rm -rf /", /vault-rotation-deploy:branch must be a git branch name/],
        ["agentPoolId", "pool id", /vault-rotation-deploy:agentPoolId must be an agent pool id/],
        ["executorImage", "img $(id)", /vault-rotation-deploy:executorImage must be a container image reference/],
        ["vaultAddress", "https://vault.prod.internal:8200/v1", /vault-rotation-deploy:vaultAddress must be an https:\/\/ URL with host and optional port, no path/],
        ["vaultAddress", "http://vault.prod.internal:8200", /vault-rotation-deploy:vaultAddress must be an https:\/\//],
        ["vaultLoginAddress", "vault.example.com", /vault-rotation-deploy:vaultLoginAddress must be an https:\/\/ URL/],
        ["vaultJwtMount", "/jwt", /vault-rotation-deploy:vaultJwtMount must be a Vault auth mount path/],
        ["vaultJwtRole", "role with spaces", /vault-rotation-deploy:vaultJwtRole must be a Vault JWT role name/],
        ["vaultCaCertFile", "/etc/vault-rotation/vault-listener-ca.pem", /vault-rotation-deploy:vaultCaCertFile must be a path relative to deploy\//],
        ["vaultCaCertFile", "../Pulumi.prod.yaml", /vault-rotation-deploy:vaultCaCertFile must be a path relative to deploy\//],
        ["vaultCaCertFile", "missing.pem", /vault-rotation-deploy:vaultCaCertFile: cannot read missing\.pem: ENOENT/],
        ["vaultCaCertFile", "with-key.pem", /vault-rotation-deploy:vaultCaCertFile: with-key\.pem contains a private key/],
        ["vaultCaCertFile", "no-cert.pem", /vault-rotation-deploy:vaultCaCertFile: no-cert\.pem holds no PEM certificate/],
        ["vaultCaCertFile", "broken-cert.pem", /vault-rotation-deploy:vaultCaCertFile: broken-cert\.pem has a certificate block that does not parse/],
        ["policyEnforcement", "audit", /vault-rotation-deploy:policyEnforcement must be "policyGroup" or "localPack"/],
        ["notifyUrl", "http://hooks.example.com/x", /vault-rotation-deploy:notifyUrl must be an https:\/\/ URL .*its value is not shown/],
        ["notifyFormat", "email", /vault-rotation-deploy:notifyFormat must be one of raw, slack, ms_teams/],
    ])("rejects %s = %j before registering anything", (key, value, message) => {
        const before = registered.length;
        expect(() => requireWith({ ...stackConfig, [key]: value })).toThrow(message);
        expect(registered.length).toBe(before);
    });

    it.each([
        ["policyPackName", "", /vault-rotation-deploy:policyPackName must be a policy pack name .* when policyEnforcement is policyGroup/],
        ["policyPackName", "guardrails; rm", /vault-rotation-deploy:policyPackName must be a policy pack name/],
        ["policyPackVersion", "", /vault-rotation-deploy:policyPackVersion must be a published pack version .* when policyEnforcement is policyGroup/],
        ["policyPackVersion", "latest", /vault-rotation-deploy:policyPackVersion must be a published pack version/],
    ])("in policyGroup mode, rejects %s = %j before registering anything", (key, value, message) => {
        const before = registered.length;
        expect(() => requireWith({ ...stackConfig, ...POLICY_GROUP, [key]: value })).toThrow(message);
        expect(registered.length).toBe(before);
    });

    it("switched to policyGroup without naming the pack (Pulumi.yaml's empty defaults), fails naming policyPackName", () => {
        const before = registered.length;
        expect(() => requireWith({ ...stackConfig, policyEnforcement: "policyGroup" })).toThrow(/vault-rotation-deploy:policyPackName/);
        expect(registered.length).toBe(before);
    });

    it("rejects an ssh key that is not a private key, without echoing it", () => {
        const before = registered.length;
        const notAKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN29kHvLENzQZExy63KmefwWBqBlM97gxsizErEUJeX3 a public key";
        let error: Error | undefined;
        try {
            requireWith({ ...stackConfig, sshPrivateKey: notAKey });
        } catch (e) {
            error = e as Error;
        }
        expect(error?.message).toMatch(/vault-rotation-deploy:sshPrivateKey must be a PEM or OpenSSH private key/);
        expect(error?.message).not.toContain("AAAAC3Nza");
        expect(registered.length).toBe(before);
    });

    it("defaults driftAutoRemediate to false, repoDir to '.', the JWT mount to jwt and the login address to vaultAddress, with no agent pool or executor image", async () => {
        // The pack named (policyGroup's inputs), the mode left to its default.
        const minimal: Record<string, string> = { ...stackConfig, ...POLICY_GROUP };
        for (const k of ["driftAutoRemediate", "repoDir", "agentPoolId", "executorImage", "vaultJwtMount", "vaultLoginAddress", "policyEnforcement"]) delete minimal[k];
        const fresh = await loadWith(minimal);
        const drift = fresh.find((r) => r.type === T.drift)!;
        const settings = fresh.find((r) => r.type === T.settings)!.inputs as {
            sourceContext: { git: { repoDir: string } };
            operationContext: { preRunCommands: string[]; environmentVariables?: Record<string, string> };
            agentPoolId?: string;
            executorContext?: unknown;
        };
        expect(drift.inputs.autoRemediate).toBe(false);
        expect(settings.sourceContext.git.repoDir).toBe(".");
        expect(settings.operationContext.preRunCommands).toEqual(["npm ci"]);
        expect(settings.operationContext.environmentVariables).toEqual({ PULUMI_CONTINUE_ON_ERROR: "true", PULUMI_OPTION_REFRESH: "true", PULUMI_NODEJS_TRANSPILE_ONLY: "false" });
        expect(settings.agentPoolId).toBeUndefined();
        expect(settings.executorContext).toBeUndefined();
        const login = (await environmentValues(only(T.environment, fresh).inputs)).vault.login["fn::open::vault-login"];
        expect(login.address).toBe(stackConfig.vaultAddress);
        expect(login.jwt.mount).toBe("jwt");
        // policyEnforcement defaults to the policy group, in index.ts as in Pulumi.yaml.
        expect(fresh.filter((r) => r.type === T.policyGroup)).toHaveLength(1);
        expect(readDeclaredConfig(path.join(DEPLOY_DIR, "Pulumi.yaml")).get("policyEnforcement")).toMatch(/^ {4}default: policyGroup$/m);
    });

    it("with neither a mode nor a pack named, fails (the policyGroup default) rather than falling back to localPack", () => {
        const rest: Record<string, string> = { ...stackConfig };
        delete rest.policyEnforcement;
        const before = registered.length;
        expect(() => requireWith(rest)).toThrow(/vault-rotation-deploy:policyPackName .* when policyEnforcement is policyGroup/);
        expect(registered.length).toBe(before);
    });

    it("passes an agent pool and an executor image through, still with only `npm ci`", async () => {
        const fresh = await loadWith({ ...stackConfig, agentPoolId: "0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f", executorImage: "registry.acme.internal/pulumi/vault-rotation-executor:1.0" });
        const settings = fresh.find((r) => r.type === T.settings)!.inputs as {
            operationContext: { preRunCommands: string[] };
            agentPoolId?: string;
            executorContext?: { executorImage: string };
        };
        expect(settings.agentPoolId).toBe("0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f");
        expect(settings.executorContext).toEqual({ executorImage: "registry.acme.internal/pulumi/vault-rotation-executor:1.0" });
        expect(settings.operationContext.preRunCommands).toEqual(["npm ci"]);
    });

    it.each(["scheduleCron", "vaultAddress", "vaultJwtRole", "vaultCaCertFile"])("fails on a missing required key (%s), naming it", (key) => {
        const rest: Record<string, string> = { ...stackConfig };
        delete rest[key];
        expect(() => requireWith(rest)).toThrow(new RegExp(`vault-rotation-deploy:${key}`));
    });

    it("fails naming both keys when a stack file sets stack and stacks", () => {
        const before = registered.length;
        expect(() => requireWith({ ...stackConfig, stacks: JSON.stringify(["prod-a"]) })).toThrow(
            /^vault-rotation-deploy:stack and vault-rotation-deploy:stacks are both set: set stack for one target stack or stacks for a sharded fleet, not both$/,
        );
        expect(registered.length).toBe(before);
    });

    it("fails naming both keys when a stack file sets neither (stacks [] is Pulumi.yaml's default)", () => {
        const rest: Record<string, string> = { ...stackConfig };
        delete rest.stack;
        for (const values of [rest, { ...rest, stacks: "[]" }, { ...rest, stack: "" }]) {
            const before = registered.length;
            expect(() => requireWith(values)).toThrow(/^vault-rotation-deploy:stack or vault-rotation-deploy:stacks must be set/);
            expect(registered.length).toBe(before);
        }
    });

    it("takes stacks at its Pulumi.yaml default ([]) as unset next to stack", async () => {
        const fresh = await loadWith({ ...stackConfig, stacks: "[]", stagger: "0" });
        expect(fresh.map((r) => r.urn).sort()).toEqual([...PROD_URNS].sort());
    });

    it("rejects a stack listed twice, naming the entry and the first one", () => {
        const before = registered.length;
        const list = ["prod-a", { stack: "prod-b", vaultJwtRole: "esc-b" }, { stack: "prod-a", vaultJwtRole: "esc-c" }];
        expect(() => requireWith(fleetConfig(list))).toThrow(/^vault-rotation-deploy:stacks\[2\]\.stack: "prod-a" is listed twice \(also stacks\[0\]\); each target stack appears once$/);
        expect(() => requireWith(fleetConfig([{ stack: "prod-a", vaultJwtRole: "esc-a" }, "prod-a"]))).toThrow(/^vault-rotation-deploy:stacks\[1\]: "prod-a" is listed twice \(also stacks\[0\]\.stack\)/);
        expect(registered.length).toBe(before);
    });

    it("rejects two stacks with one Vault JWT role, the top-level default included", () => {
        const before = registered.length;
        expect(() => requireWith(fleetConfig(["prod-a", "prod-b"]))).toThrow(
            /^vault-rotation-deploy:stacks\[1\]\.vaultJwtRole: prod-b would log in with the Vault JWT role "esc-vault-rotation-prod" of prod-a \(stacks\[0\], which names no vaultJwtRole/,
        );
        expect(() => requireWith(fleetConfig(["prod-a", { stack: "prod-b", vaultJwtRole: "esc-vault-rotation-prod" }]))).toThrow(/stacks\[1\]\.vaultJwtRole: .*here stacks\[1\]\.vaultJwtRole\): each stack's environment needs its own role$/);
        expect(registered.length).toBe(before);
    });

    it.each([
        ["a number entry", ["prod-a", 42], /^vault-rotation-deploy:stacks\[1\] must be a stack name or an object \{stack: <name>, \.\.\.\}, got a number$/],
        ["a null entry", ["prod-a", null], /^vault-rotation-deploy:stacks\[1\] must be a stack name or an object .*, got null$/],
        ["a nested list", [["prod-a"]], /^vault-rotation-deploy:stacks\[0\] must be a stack name or an object .*, got a list$/],
        ["a bad bare name", ["prod-a", "prod b"], /^vault-rotation-deploy:stacks\[1\] must be a stack name, got "prod b"$/],
        ["an object without stack", [{ vaultJwtRole: "esc-a" }], /^vault-rotation-deploy:stacks\[0\]\.stack is required: the name of the target stack$/],
        ["a bad stack name", ["prod-a", "prod-b", { stack: "prod/c" }], /^vault-rotation-deploy:stacks\[2\]\.stack must be a stack name, got "prod\/c"$/],
        ["a stack name that is not a string", [{ stack: 3 }], /^vault-rotation-deploy:stacks\[0\]\.stack must be a string, got a number$/],
        ["a shared setting in an entry", ["prod-a", { stack: "prod-b", notifyUrl: "https://hooks.example.com/b" }], /^vault-rotation-deploy:stacks\[1\]\.notifyUrl is not a per-stack setting: an entry of stacks may set stack, vaultJwtRole, sshPrivateKey, scheduleCron, driftCron/],
        ["a bad role", [{ stack: "prod-a", vaultJwtRole: "role with spaces" }], /^vault-rotation-deploy:stacks\[0\]\.vaultJwtRole must be a Vault JWT role name/],
        ["a role that is not a string", [{ stack: "prod-a", vaultJwtRole: ["esc-a"] }], /^vault-rotation-deploy:stacks\[0\]\.vaultJwtRole must be a string, got a list$/],
        ["a bad cron", [{ stack: "prod-a", scheduleCron: "weekly" }], /^vault-rotation-deploy:stacks\[0\]\.scheduleCron must be a 5-field cron expression, got "weekly"$/],
        ["a bad drift cron", ["prod-a", { stack: "prod-b", vaultJwtRole: "esc-b", driftCron: "0 6 * *" }], /^vault-rotation-deploy:stacks\[1\]\.driftCron must be a 5-field cron expression/],
    ])("rejects %s in stacks before registering anything", (_what, list, message) => {
        const before = registered.length;
        expect(() => requireWith(fleetConfig(list))).toThrow(message);
        expect(registered.length).toBe(before);
    });

    it.each([
        ["a YAML scalar", "prod-a"],
        ["an object", JSON.stringify({ stack: "prod-a", sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----" })],
    ])("rejects a stacks value that is not a list (%s), without showing it", (_what, value) => {
        const rest: Record<string, string> = { ...stackConfig, stacks: value };
        delete rest.stack;
        let error: Error | undefined;
        try {
            requireWith(rest);
        } catch (e) {
            error = e as Error;
        }
        expect(error?.message).toMatch(/^vault-rotation-deploy:stacks must be a list \(a YAML sequence\) of stack names or \{stack: <name>, \.\.\.\} objects; its value is not shown/);
        expect(error?.message).not.toMatch(/prod-a|PRIVATE KEY/);
    });

    it("rejects an entry's ssh key that is not a private key, naming the entry and not echoing it", () => {
        const notAKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN29kHvLENzQZExy63KmefwWBqBlM97gxsizErEUJeX3 a public key";
        const before = registered.length;
        let error: Error | undefined;
        try {
            requireWith(fleetConfig([{ stack: "prod-a", vaultJwtRole: "esc-a", sshPrivateKey: notAKey }]));
        } catch (e) {
            error = e as Error;
        }
        expect(error?.message).toBe("vault-rotation-deploy:stacks[0].sshPrivateKey must be a PEM or OpenSSH private key (pulumi config set --secret --path 'stacks[0].sshPrivateKey' < key); its value is not shown");
        expect(registered.length).toBe(before);
        // Only a string may be there; its type is named, not its value.
        expect(() => requireWith(fleetConfig([{ stack: "prod-a", sshPrivateKey: { secure: "v1:abc" } }]))).toThrow(/^vault-rotation-deploy:stacks\[0\]\.sshPrivateKey must be a string, got an object$/);
    });

    it("lets an entry say \"\" for no ssh key, whatever the top-level one", async () => {
        const fresh = await loadWith(fleetConfig([{ stack: "prod-a", vaultJwtRole: "esc-a", sshPrivateKey: "" }, { stack: "prod-b", vaultJwtRole: "esc-b" }], { sshPrivateKey: FAKE_SSH_KEY }));
        expect((await environmentYaml(onlyFor(T.environment, "prod-a", fresh).inputs)).secret).toBe(false);
        expect((await environmentValues(onlyFor(T.environment, "prod-a", fresh).inputs)).pulumiConfig).not.toHaveProperty("vault-rotation:sshPrivateKey");
        expect((await environmentValues(onlyFor(T.environment, "prod-b", fresh).inputs)).pulumiConfig["vault-rotation:sshPrivateKey"]).toEqual({ "fn::secret": FAKE_SSH_KEY });
    });

    it.each(["20", "30s", "-20m", "1d", "20 m", "1h 30m", "m", "twenty minutes"])("rejects stagger %j before registering anything", (stagger) => {
        const before = registered.length;
        expect(() => requireWith(fleetConfig(FLEET, { stagger }))).toThrow(
            new RegExp(`^vault-rotation-deploy:stagger must be a duration in whole minutes, e\\.g\\. 20m, 1h or 1h30m \\(0: every stack at the same time\\), got ${JSON.stringify(stagger).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`),
        );
        expect(registered.length).toBe(before);
    });

    it.each([
        ["a spread of a whole day", {}, "12h", /^vault-rotation-deploy:stagger 12h puts stacks\[2\] \(prod-c\) 24h after stacks\[0\], not less than the 24h between two runs of scheduleCron "0 3 \* \* \*"/],
        ["a spread of an hourly cron's hour", { scheduleCron: "0 * * * *" }, "30m", /^vault-rotation-deploy:stagger 30m puts stacks\[2\] \(prod-c\) 1h after stacks\[0\], not less than the 1h between two runs of scheduleCron "0 \* \* \* \*"/],
        ["a list in the hour", { scheduleCron: "0 3,15 * * *" }, "20m", /^vault-rotation-deploy:scheduleCron "0 3,15 \* \* \*" cannot be staggered \(stagger 20m\): its hour field must be one number, 0-23, or \*/],
        ["a range in the hour", { scheduleCron: "0 1-5 * * *" }, "20m", /^vault-rotation-deploy:scheduleCron "0 1-5 \* \* \*" cannot be staggered .*its hour field must be one number/],
        ["a step in the minute", { scheduleCron: "*/10 3 * * *" }, "20m", /^vault-rotation-deploy:scheduleCron "\*\/10 3 \* \* \*" cannot be staggered .*its minute field must be one number, 0-59/],
        ["a step in the drift hour", { driftCron: "0 */6 * * *" }, "20m", /^vault-rotation-deploy:driftCron "0 \*\/6 \* \* \*" cannot be staggered .*its hour field/],
        ["a restricted day crossed at midnight", { scheduleCron: "50 23 * * 1-5" }, "20m", /^vault-rotation-deploy:scheduleCron "50 23 \* \* 1-5" cannot be staggered for stacks\[1\] \(20m later\): that moves runs past midnight into the next day, and its day fields are not all \*/],
        ["an hourly cron on weekdays, crossed at the hour", { scheduleCron: "50 * * * 1-5" }, "5m", /^vault-rotation-deploy:scheduleCron "50 \* \* \* 1-5" cannot be staggered for stacks\[2\] \(10m later\)/],
    ])("rejects %s (%j, stagger %s)", (_what, extra: Record<string, string>, stagger, message) => {
        const before = registered.length;
        expect(() => requireWith(fleetConfig(FLEET, { ...extra, stagger }))).toThrow(message);
        expect(registered.length).toBe(before);
    });

    it("rejects a spread past a target stack's promised rotation.runInterval, where its stack file is in the repository", () => {
        const before = registered.length;
        const list = [{ stack: "prod-h1", vaultJwtRole: "esc-h1" }, "prod-b", { stack: "prod-c", vaultJwtRole: "esc-c" }];
        expect(() => requireWith(fleetConfig(list, { scheduleCron: "0 * * * *", stagger: "20m" }))).toThrow(
            /^vault-rotation-deploy:stagger 20m spreads the scheduled updates over 40m, more than the rotation.runInterval 30m that Pulumi.prod-h1.yaml \(stacks\[0\]\) promises$/,
        );
        expect(registered.length).toBe(before);
        // 15 minutes apart, the spread (30m) keeps the promise.
        expect(() => requireWith(fleetConfig(list, { scheduleCron: "0 * * * *", stagger: "15m" }))).not.toThrow();
    });
});
