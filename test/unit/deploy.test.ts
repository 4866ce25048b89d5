// deploy/index.ts (project vault-rotation-deploy) under Pulumi mocks, with the config of
// deploy/Pulumi.prod.yaml: the resources it registers, their inputs and dependencies,
// its outputs, and that it keeps secrets out of the Deployment settings.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { durationSeconds } from "../../config";
import { loadStackConfig } from "../support/harness";

const DEPLOY_DIR = path.join(__dirname, "..", "..", "deploy");
const PROJECT = "vault-rotation-deploy";

const T = {
    settings: "pulumiservice:index:DeploymentSettings",
    schedule: "pulumiservice:index:DeploymentSchedule",
    drift: "pulumiservice:index:DriftSchedule",
};

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

const stackConfig = readStackConfig(path.join(DEPLOY_DIR, "Pulumi.prod.yaml"));
const registered: Registered[] = [];
const configKeysRead = new Set<string>();
let outputs: Record<string, unknown> = {};

function setConfig(values: Record<string, string>): void {
    pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(values).map(([k, v]) => [`${PROJECT}:${k}`, v])));
}

function only(type: string): Registered {
    const found = registered.filter((r) => r.type === type);
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
        });
    });

    it("uses only keys that Pulumi.yaml declares, each with a type and a description", () => {
        const declared = readDeclaredConfig(path.join(DEPLOY_DIR, "Pulumi.yaml"));
        const used = new Set([...Object.keys(stackConfig), ...configKeysRead]);
        expect(configKeysRead.size).toBeGreaterThanOrEqual(10);
        for (const key of used) {
            expect(declared.has(key) ? key : `${key} (undeclared)`).toBe(key);
            expect(declared.get(key)).toMatch(/^ {4}type: (string|boolean|integer)$/m);
            expect(declared.get(key)).toMatch(/^ {4}description: \S/m);
        }
        expect(fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.yaml"), "utf8")).toMatch(/^name: vault-rotation-deploy$/m);
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

    it("runs at least as often as Pulumi.prod.yaml's rotation.runInterval (agent certs cannot lapse between runs)", () => {
        const target = loadStackConfig(path.join(DEPLOY_DIR, "..", "Pulumi.prod.yaml"));
        const runInterval = JSON.parse(target["vault-rotation:rotation"]).runInterval as string;
        expect(runInterval).toBe("24h");
        expect(longestCronGapSeconds(stackConfig.scheduleCron)).toBeLessThanOrEqual(durationSeconds(runInterval));
    });
});

describe("deploy/index.ts", () => {
    it("registers exactly one settings, one schedule and one drift schedule", () => {
        expect(registered.map((r) => r.type).sort()).toEqual([T.settings, T.schedule, T.drift].sort());
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

    it("leaves the Vault login to the program: no Vault environment, no Vault config keys", () => {
        const s = only(T.settings).inputs as { operationContext: Record<string, unknown> & { environmentVariables?: Record<string, string> } };
        // The program reads vault:address / vault:caCertFile / vault.jwtAuth from its own
        // stack config and logs in with PULUMI_OIDC_TOKEN; a VAULT_TOKEN here would win over that.
        // The only variable: every run continues past one app's failure (`--continue-on-error`).
        expect(s.operationContext.environmentVariables ?? {}).toEqual({ PULUMI_CONTINUE_ON_ERROR: "true" });
        // Pulumi Deployments provide the OIDC token to every run; the SDK's oidc options are cloud-only.
        expect(s.operationContext.oidc).toBeUndefined();
        const declared = [...readDeclaredConfig(path.join(DEPLOY_DIR, "Pulumi.yaml")).keys()];
        expect(declared.filter((k) => /^vault/i.test(k))).toEqual([]);
        expect([...configKeysRead].filter((k) => /^vault/i.test(k))).toEqual([]);
        expect(Object.keys(stackConfig).filter((k) => /^vault/i.test(k))).toEqual([]);
        const prodYaml = fs.readFileSync(path.join(DEPLOY_DIR, "Pulumi.prod.yaml"), "utf8");
        expect(prodYaml).not.toMatch(/certs\//);
    });

    it("runs operator previews without checkpoints and never an update (package.json scripts); the Deployment keeps them", () => {
        const scripts = (JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, "..", "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
        expect(scripts.preview).toBe("PULUMI_SKIP_CHECKPOINTS=true pulumi preview");
        expect(scripts.drift).toBe("PULUMI_SKIP_CHECKPOINTS=true pulumi refresh --preview-only");
        for (const command of Object.values(scripts).filter((c) => c.includes("PULUMI_SKIP_CHECKPOINTS"))) {
            expect(command).not.toMatch(/pulumi (up|update|destroy)\b|refresh(?! --preview-only)/);
        }
        // Settings apply to every operation of the stack, the scheduled `pulumi up` included.
        const env = (only(T.settings).inputs as { operationContext: { environmentVariables?: Record<string, string> } }).operationContext.environmentVariables ?? {};
        expect(env).not.toHaveProperty("PULUMI_SKIP_CHECKPOINTS");
    });

    it("schedules a `pulumi up` on the configured cron, after the settings exist", () => {
        const settings = only(T.settings);
        const schedule = only(T.schedule);
        expect(schedule.inputs).toMatchObject({
            organization: "acme-platform",
            project: "vault-rotation",
            stack: "prod",
            pulumiOperation: "update",
            scheduleCron: "0 3 * * *",
        });
        expect(schedule.inputs.timestamp).toBeUndefined();
        expect(settings.urn).toBeDefined();
        expect(schedule.dependencies).toContain(settings.urn);
    });

    it("detects drift on the drift cron without auto-remediation, after the settings exist", () => {
        const settings = only(T.settings);
        const drift = only(T.drift);
        expect(drift.inputs).toMatchObject({ stack: "prod", scheduleCron: "0 6 * * *", autoRemediate: false });
        expect(drift.dependencies).toContain(settings.urn);
    });

    it("exports the schedule ids and the target stack", () => {
        expect(outputs).toEqual({
            targetStack: "acme-platform/vault-rotation/prod",
            deploymentScheduleId: `${only(T.schedule).name}-schedule-id`,
            driftScheduleId: `${only(T.drift).name}-schedule-id`,
        });
    });

    it("puts no secret in plain text: no VAULT_TOKEN, no token/key-like names or values", () => {
        const s = only(T.settings).inputs as { operationContext: { environmentVariables?: Record<string, string> } };
        const env = s.operationContext.environmentVariables ?? {};
        expect(Object.keys(env)).not.toContain("VAULT_TOKEN");
        for (const [k, v] of Object.entries(env)) {
            expect(k).not.toMatch(/TOKEN|SECRET|PASSWORD|PASSPHRASE|PRIVATE|CREDENTIAL|_KEY$/i);
            expect(v).not.toMatch(/^(hvs|hvb|hvr|s)\.[A-Za-z0-9]{8,}|^eyJ|^AKIA|^pul-|-----BEGIN/);
        }
        const everything = JSON.stringify(registered.map((r) => r.inputs));
        expect(everything).not.toMatch(/hvs\.[A-Za-z0-9]{8,}|eyJ[A-Za-z0-9_-]{10,}\.|pul-[0-9a-f]{20,}|PRIVATE KEY-----/);
        // No git credentials: the source is fetched through the org's VCS integration or a public URL.
        expect(everything).not.toMatch(/gitAuth|sshPrivateKey|password/);
    });
});

describe("deploy/index.ts config checks", () => {
    afterAll(() => setConfig(stackConfig));

    it.each([
        ["scheduleCron", "weekly", /vault-rotation-deploy:scheduleCron must be a 5-field cron expression/],
        ["driftCron", "0 6 * *", /vault-rotation-deploy:driftCron must be a 5-field cron expression/],
        ["repoUrl", "git@github.com:acme-platform/vault-rotation.git", /vault-rotation-deploy:repoUrl must be an https:\/\/ git URL/],
        ["branch", "main; rm -rf /", /vault-rotation-deploy:branch must be a git branch name/],
        ["agentPoolId", "pool id", /vault-rotation-deploy:agentPoolId must be an agent pool id/],
        ["executorImage", "img $(id)", /vault-rotation-deploy:executorImage must be a container image reference/],
    ])("rejects %s = %j before registering anything", (key, value, message) => {
        setConfig({ ...stackConfig, [key]: value });
        const before = registered.length;
        expect(() => jest.isolateModules(() => require("../../deploy/index"))).toThrow(message);
        expect(registered.length).toBe(before);
    });

    /** Loads deploy/index.ts afresh with `values` and returns what it registered. */
    async function loadWith(values: Record<string, string>): Promise<Registered[]> {
        setConfig(values);
        const before = registered.length;
        let mod: Record<string, pulumi.Output<unknown>> = {};
        jest.isolateModules(() => {
            mod = require("../../deploy/index");
        });
        await promiseOf(mod.driftScheduleId);
        await promiseOf(mod.deploymentScheduleId);
        return registered.slice(before);
    }

    it("defaults driftAutoRemediate to false and repoDir to '.', with no agent pool or executor image", async () => {
        const minimal: Record<string, string> = { ...stackConfig };
        for (const k of ["driftAutoRemediate", "repoDir", "agentPoolId", "executorImage"]) delete minimal[k];
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
        expect(settings.operationContext.environmentVariables).toEqual({ PULUMI_CONTINUE_ON_ERROR: "true" });
        expect(settings.agentPoolId).toBeUndefined();
        expect(settings.executorContext).toBeUndefined();
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

    it("fails on a missing required key", () => {
        const rest: Record<string, string> = { ...stackConfig };
        delete rest.scheduleCron;
        setConfig(rest);
        expect(() => jest.isolateModules(() => require("../../deploy/index"))).toThrow(/scheduleCron/);
    });
});
