// The real Pulumi engine: the CLI (scripts/get-pulumi-engine.sh), the Node.js
// language host, and the vault and command provider plugins
// (scripts/get-pulumi-plugins.sh), driven through the Automation API on a
// throwaway file backend. This is what operators run; test/support/applier.ts
// stands in for it where these are not on the machine, and a test keeps the two
// equal (test/engine/engine.test.ts).
//
// The program is this repository's index.ts, unchanged. Its project directory is
// a throwaway copy of Pulumi.yaml (with `main` pointing back at the repository):
// the CLI writes a stack's settings file (`Pulumi.<stack>.yaml`, its encryption
// salt and secrets) into the project directory, which must not be the
// repository's, where the committed stack files live. Its `node_modules` is a
// link to the repository's, because the dynamic-provider host resolves
// `@pulumi/pulumi` and `@vault-rotation/providers` from the project directory.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as yaml from "js-yaml";
import type { Action, AppliedStep } from "./applier";
import { REPO_ROOT } from "./harness";
import { runningAsRoot } from "./hostUsers";
import { listPids, readProcStat } from "./procfs";

type Automation = typeof import("@pulumi/pulumi/automation");
type Stack = import("@pulumi/pulumi/automation").Stack;
type EngineEvent = import("@pulumi/pulumi/automation").EngineEvent;

/** Where the engine is on this machine, or why it is not. */
export interface EngineTools {
    /** Directory holding `pulumi`, `pulumi-language-nodejs`, `pulumi-resource-pulumi-nodejs`. */
    cliDir: string;
    /** PULUMI_HOME holding the vault and command plugins. */
    pulumiHome: string;
    /** `pulumi version` (e.g. `v3.274.1`). */
    version: string;
}

const CACHE = process.env.VAULT_ROTATION_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "vault-rotation");

/** The provider plugins the SDK packages ask for, at the versions package.json pins. */
export function requiredPlugins(): { name: string; version: string }[] {
    return ["vault", "command"].map((name) => ({
        name,
        version: (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "node_modules", "@pulumi", name, "package.json"), "utf8")) as { version: string }).version,
    }));
}

/**
 * The engine and plugins when both are installed (never builds them): the CLI
 * from `get-pulumi-engine.sh --cached-only`, the plugins from the PULUMI_HOME
 * that `get-pulumi-plugins.sh` fills. `missing` names what to run otherwise.
 */
export function findEngine(): { tools?: EngineTools; missing?: string } {
    const engine = spawnSync("bash", [path.join(REPO_ROOT, "scripts", "get-pulumi-engine.sh"), "--cached-only"], { encoding: "utf8", env: process.env });
    const cliDir = engine.status === 0 ? engine.stdout.trim().split("\n").pop() ?? "" : "";
    const pulumiHome = process.env.VAULT_ROTATION_PULUMI_HOME ?? path.join(CACHE, "pulumi-home");
    const absent = requiredPlugins()
        .filter((p) => !fs.existsSync(path.join(pulumiHome, "plugins", `resource-${p.name}-v${p.version}`, `pulumi-resource-${p.name}`)))
        .map((p) => `${p.name} ${p.version}`);
    const problems = [
        ...(cliDir ? [] : ["no Pulumi CLI (run scripts/get-pulumi-engine.sh)"]),
        ...(absent.length > 0 ? [`no ${absent.join(" and ")} plugin in ${pulumiHome} (run scripts/get-pulumi-plugins.sh)`] : []),
    ];
    if (problems.length > 0) return { missing: problems.join("; ") };
    const version = spawnSync(path.join(cliDir, "pulumi"), ["version"], { encoding: "utf8" }).stdout.trim();
    return { tools: { cliDir, pulumiHome, version } };
}

/** Keys this program reads as secrets: set as secrets in the engine's stack, as an operator would. */
const SECRET_KEYS = ["vault-rotation:sshPrivateKey", "vault-rotation:kvSeedData"];

/** The flat config (`ns:key -> string`, objects JSON-encoded) as structured YAML values, the way stack files hold them. */
function structured(value: string): unknown {
    if (/^\s*[[{]/.test(value)) {
        try {
            return JSON.parse(value);
        } catch {
            return value;
        }
    }
    return value;
}

/** Every leaf of an object as a `--path` key (`kvSeedData.app-a.owner`), as `pulumi config set --path` takes it. */
function leafPaths(prefix: string, value: unknown): [string, string][] {
    if (typeof value !== "object" || value === null) return [[prefix, String(value)]];
    return Object.entries(value).flatMap(([k, v]) => leafPaths(`${prefix}.${/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k)}`, v));
}

export interface EngineRun {
    /** Stack outputs, plain values (secrets unwrapped). */
    outputs: Record<string, unknown>;
    /** One step per custom resource, in the applier's terms. */
    steps: AppliedStep[];
    /** The engine's own summary (`create: 3, same: 40`). */
    summary: Record<string, number>;
    /** What the CLI printed. */
    stdout: string;
    seconds: number;
}

export interface EngineStackOptions {
    tools: EngineTools;
    /** Stack name (also the stack file's name in the throwaway project). */
    stack: string;
    /** Flat config, as the sandbox rewrote it. */
    config: Record<string, string>;
    /** The token the provider and the dynamic providers use (VAULT_TOKEN). */
    vaultToken: string;
    /** Parent directory for the project and the file backend (default: a temp dir). */
    root?: string;
    log?: (line: string) => void;
}

/** Maps an engine step's op onto the applier's action words. */
function actionOf(op: string): Action | undefined {
    switch (op) {
        case "same":
        case "read":
        case "refresh":
            return "same";
        case "create":
            return "create";
        case "update":
            return "update";
        case "replace":
        case "create-replacement":
        case "delete-replaced":
        case "discard-replaced":
            return "replace";
        case "delete":
            return "delete";
        default:
            return undefined;
    }
}

/** The custom resources a run touched, one entry each (a replacement's three ops fold into one `replace`). */
function stepsFromEvents(events: EngineEvent[], phase: "pre" | "outputs"): AppliedStep[] {
    const byUrn = new Map<string, AppliedStep>();
    for (const e of events) {
        const meta = phase === "pre" ? e.resourcePreEvent?.metadata : e.resOutputsEvent?.metadata;
        if (!meta) continue;
        const type = meta.type;
        // Components, the stack and provider resources are not the applier's to perform.
        if (type.startsWith("pulumi:") || /^vault-rotation:[a-z]+:/.test(type)) continue;
        const action = actionOf(meta.op);
        if (!action) continue;
        const name = meta.urn.split("::").pop() ?? meta.urn;
        const prior = byUrn.get(meta.urn);
        if (!prior || action === "replace") byUrn.set(meta.urn, { urn: meta.urn, type, name, action });
    }
    return [...byUrn.values()];
}

function plainOutputs(outputs: Record<string, { value: unknown }>): Record<string, unknown> {
    return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.value]));
}

/**
 * A stack of this program under the real engine, in a throwaway project and
 * file backend. Every operation is what an operator's CLI run would do.
 */
export class EngineStack {
    private constructor(
        readonly root: string,
        readonly projectDir: string,
        readonly backendDir: string,
        readonly env: Record<string, string>,
        private readonly stackObj: Stack,
        private readonly opts: EngineStackOptions,
    ) {}

    static async create(opts: EngineStackOptions): Promise<EngineStack> {
        const auto = require("@pulumi/pulumi/automation") as Automation;
        const root = opts.root ?? fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-engine-"));
        const projectDir = path.join(root, "project");
        const backendDir = path.join(root, "backend");
        fs.mkdirSync(projectDir, { recursive: true });
        fs.mkdirSync(backendDir, { recursive: true });
        writeShadowProject(projectDir);
        const env = engineEnv(opts.tools, backendDir, opts.vaultToken);
        const ws = await auto.LocalWorkspace.create({
            workDir: projectDir,
            pulumiHome: opts.tools.pulumiHome,
            envVars: env,
            pulumiCommand: await commandAt(auto, opts.tools.cliDir, root),
        });
        const stack = await auto.Stack.create(opts.stack, ws);
        const engineStack = new EngineStack(root, projectDir, backendDir, env, stack, opts);
        await engineStack.setConfig(opts.config);
        return engineStack;
    }

    get name(): string {
        return this.opts.stack;
    }

    private log(line: string): void {
        this.opts.log?.(line);
    }

    /** The stack file: plain keys as structured values (as operators write them), secrets through the CLI. */
    async setConfig(config: Record<string, string>): Promise<void> {
        const file = path.join(this.projectDir, `Pulumi.${this.opts.stack}.yaml`);
        const doc = (fs.existsSync(file) ? (yaml.load(fs.readFileSync(file, "utf8")) as Record<string, unknown> | null) : null) ?? {};
        const plain: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(config)) if (!SECRET_KEYS.includes(k)) plain[k] = structured(v);
        fs.writeFileSync(file, yaml.dump({ ...doc, config: plain }, { lineWidth: -1 }));
        for (const key of SECRET_KEYS) {
            const value = config[key];
            if (value === undefined || value === "" || value === "{}") continue;
            const parsed = structured(value);
            if (typeof parsed === "object" && parsed !== null) {
                for (const [p, leaf] of leafPaths(key, parsed)) await this.stackObj.setConfig(p, { value: leaf, secret: true }, true);
            } else {
                await this.stackObj.setConfig(key, { value, secret: true });
            }
        }
    }

    /** `pulumi up`; throws with the CLI's output when the update fails. */
    async up(opts: { expectNoChanges?: boolean; continueOnError?: boolean } = {}): Promise<EngineRun> {
        const events: EngineEvent[] = [];
        const started = Date.now();
        const r = await this.stackObj.up({ onEvent: (e) => events.push(e), expectNoChanges: opts.expectNoChanges, continueOnError: opts.continueOnError, color: "never" });
        const seconds = (Date.now() - started) / 1000;
        this.log(`pulumi up --stack ${this.opts.stack}: ${JSON.stringify(r.summary.resourceChanges ?? {})} in ${seconds.toFixed(1)} s`);
        return { outputs: plainOutputs(r.outputs), steps: stepsFromEvents(events, "outputs"), summary: (r.summary.resourceChanges ?? {}) as Record<string, number>, stdout: r.stdout, seconds };
    }

    /** `pulumi preview`: the steps it plans. */
    async preview(opts: { expectNoChanges?: boolean; refresh?: boolean } = {}): Promise<EngineRun> {
        const events: EngineEvent[] = [];
        const started = Date.now();
        const r = await this.stackObj.preview({ onEvent: (e) => events.push(e), expectNoChanges: opts.expectNoChanges, refresh: opts.refresh, color: "never" });
        const seconds = (Date.now() - started) / 1000;
        return { outputs: {}, steps: stepsFromEvents(events, "pre"), summary: r.changeSummary as Record<string, number>, stdout: r.stdout, seconds };
    }

    /** `pulumi refresh --yes`: the steps it took (an `update` is drift it found). */
    async refresh(opts: { clearPendingCreates?: boolean } = {}): Promise<EngineRun> {
        const events: EngineEvent[] = [];
        const started = Date.now();
        const r = await this.stackObj.refresh({ onEvent: (e) => events.push(e), color: "never", clearPendingCreates: opts.clearPendingCreates });
        const seconds = (Date.now() - started) / 1000;
        return { outputs: {}, steps: stepsFromEvents(events, "outputs"), summary: (r.summary.resourceChanges ?? {}) as Record<string, number>, stdout: r.stdout, seconds };
    }

    /** Runs the CLI itself in this project (`pulumi cancel --yes`, ...), as an operator would type it. */
    cli(args: string[], timeoutMs = 600_000, extraEnv: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
        const r = spawnSync(path.join(this.opts.tools.cliDir, "pulumi"), [...args, "--stack", this.opts.stack, "--non-interactive", "--color", "never"], {
            cwd: this.projectDir,
            env: { ...this.env, ...extraEnv },
            encoding: "utf8",
            timeout: timeoutMs,
            maxBuffer: 64 * 1024 * 1024,
        });
        return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    }

    /**
     * `pulumi up` as its own process group, killed with SIGKILL (the CLI, the
     * language host, the plugins and the host steps they started: the whole
     * process tree, as when the runner dies) once `when` says so; resolves with
     * what it had printed by then.
     */
    upKilledWhen(when: () => boolean, timeoutMs = 600_000): Promise<{ killed: boolean; output: string }> {
        return new Promise((resolve) => {
            const child = spawn(path.join(this.opts.tools.cliDir, "pulumi"), ["up", "--yes", "--skip-preview", "--stack", this.opts.stack, "--non-interactive", "--color", "never"], {
                cwd: this.projectDir,
                env: this.env,
                detached: true,
                stdio: ["ignore", "pipe", "pipe"],
            });
            let output = "";
            child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
            child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
            let killed = false;
            const started = Date.now();
            const timer = setInterval(() => {
                if (killed) return;
                // Only while the CLI has not exited: a reaped pid may already belong to another process.
                if (child.exitCode !== null || child.signalCode !== null) return;
                if (when() || Date.now() - started > timeoutMs) {
                    killed = true;
                    killTree(child.pid!);
                }
            }, 50);
            child.on("close", () => {
                clearInterval(timer);
                resolve({ killed, output });
            });
        });
    }

    /** The file backend's checkpoint of this stack, as text. */
    checkpointText(): string {
        const dir = path.join(this.backendDir, ".pulumi", "stacks", "vault-rotation");
        const file = path.join(dir, `${this.opts.stack}.json`);
        return fs.readFileSync(file, "utf8");
    }

    /** Removes the throwaway project and backend (the stack's Vault objects and host files are the sandbox's). */
    cleanup(): void {
        fs.rmSync(this.root, { recursive: true, force: true });
    }
}

async function commandAt(auto: Automation, cliDir: string, parent: string) {
    // PulumiCommand.get({root}) looks for <root>/bin/pulumi; ours is <cliDir>/pulumi. A link
    // directory gives it that shape without copying the binary.
    const root = path.join(parent, "cli");
    fs.mkdirSync(path.join(root, "bin"), { recursive: true });
    fs.symlinkSync(path.join(cliDir, "pulumi"), path.join(root, "bin", "pulumi"));
    return auto.PulumiCommand.get({ root, skipVersionCheck: true });
}

/** The environment every CLI run gets: a file backend, no plugin downloads, the engine first on PATH. */
export function engineEnv(tools: EngineTools, backendDir: string, vaultToken: string): Record<string, string> {
    const keep = ["HOME", "USER", "LOGNAME", "LANG", "TMPDIR", "XDG_CACHE_HOME", "VAULT_ROTATION_CACHE"];
    const env: Record<string, string> = {};
    for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    return {
        ...env,
        PATH: `${tools.cliDir}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        PULUMI_HOME: tools.pulumiHome,
        PULUMI_BACKEND_URL: `file://${backendDir}`,
        PULUMI_CONFIG_PASSPHRASE: "engine-test-passphrase",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
        VAULT_TOKEN: vaultToken,
        // Not root: the sandbox runs every app as the current user (README, "Which user model ran").
        ...(runningAsRoot() ? {} : { VAULT_ROTATION_SAME_USER_REHEARSAL: "1" }),
    };
}

/**
 * The throwaway project directory: the repository's Pulumi.yaml, byte for byte
 * but for `main` (the repository, relative: the CLI joins it to this directory),
 * and `node_modules` linked to the repository's.
 */
export function writeShadowProject(projectDir: string, stackFiles: string[] = []): void {
    const project = fs.readFileSync(path.join(REPO_ROOT, "Pulumi.yaml"), "utf8");
    if (/^main:/m.test(project)) throw new Error("Pulumi.yaml sets main: the engine tests' project copy would need to merge it");
    const main = path.relative(projectDir, REPO_ROOT);
    fs.writeFileSync(path.join(projectDir, "Pulumi.yaml"), `${project.trimEnd()}\nmain: ${main}\n`);
    fs.rmSync(path.join(projectDir, "node_modules"), { force: true });
    fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(projectDir, "node_modules"));
    for (const f of stackFiles) fs.copyFileSync(f, path.join(projectDir, path.basename(f)));
}

/**
 * SIGKILL to a process, its process group and every descendant. The CLI starts
 * its plugins in process groups of their own (and host steps run under setsid),
 * so killing the CLI's group alone left them running after the test. Each
 * process found is stopped first (SIGSTOP) and /proc read again until no new
 * descendant appears, so one started between the reading and the kill (a host
 * step the command plugin is just starting) is not missed.
 */
export function killTree(pid: number): void {
    const signal = (target: number, sig: NodeJS.Signals) => {
        try {
            process.kill(target, sig);
        } catch {
            // already gone
        }
    };
    const tree = new Set<number>([pid]);
    signal(-pid, "SIGSTOP");
    signal(pid, "SIGSTOP");
    for (let round = 0; round < 50; round++) {
        const found = listPids().filter((p) => {
            const stat = tree.has(p) ? undefined : readProcStat(p);
            return stat !== undefined && tree.has(stat.ppid);
        });
        if (found.length === 0) break;
        for (const p of found) {
            tree.add(p);
            signal(p, "SIGSTOP");
        }
    }
    signal(-pid, "SIGKILL");
    for (const p of tree) signal(p, "SIGKILL");
}
