// `npm run bench:fleet -- --apps 10,30,50` (or `npx ts-node --transpile-only scripts/bench-fleet.ts`):
// what this program itself costs the real Pulumi engine for a stack of N apps
// (issue 21). A benchmark, not a test: it prints figures and fails only when a
// run fails (printing that run's output).
//
// For each size N, on a fresh sandbox of its own: a throwaway Vault dev-TLS server
// (PKI root + intermediate, KV v2, as the rehearsal sets it up), N apps from
// scripts/lib/generateStack.ts laid out by the rehearsal's sandbox (real users as
// root, real Vault Agents started by the systemctl shim, nginx per app and, as
// root, the nginx edge proxy), and this repository's index.ts under the Pulumi
// CLI with the vault and command plugins on a file backend (test/support/engine.ts;
// scripts/get-pulumi-engine.sh and scripts/get-pulumi-plugins.sh install them).
// Timed (wall seconds of the CLI process), checkpoints on (the default):
//   1. create             pulumi up --yes --skip-preview (epoch fleet-1)
//   2. no-op preview      pulumi preview
//   3. rotation preview   pulumi preview, with a new rotation.epoch (fleet-2), then the same preview
//                         with PULUMI_SKIP_CHECKPOINTS=true (`npm run preview`: the engine serializes
//                         its snapshot after each step of a preview too)
//   4. rotation up        pulumi up --yes --skip-preview (fleet-2)
//   5. the same rotation again with PULUMI_SKIP_CHECKPOINTS=true and a second new
//      epoch (fleet-3): the engine's floor, the same work without the rewrites of
//      the state after each step.
// The epoch changes with `pulumi config set --path vault-rotation:rotation.epoch`, as
// an operator would. The checkpoint after 4 (the state a rotation leaves) is read
// from the backend's file and broken down by resource type and property
// (scripts/lib/checkpointBreakdown.ts).
//
// Options: --apps 10,30     app counts (default 10,30)
//          --keep           keep the sandboxes, engine projects, backends and logs (their directory is printed)
//          --json <file>    every figure as JSON (also written when a run fails, with the failure)
//          --timeout <s>    seconds before one CLI run is stopped and counted as failed (default 3600)
//          --cpu-prof <dir> a V8 CPU profile of every node process of every run (the program, the dynamic
//                           providers' host; scripts/lib/cpuProfPreload.js), written to <dir>/<apps>-<phase>/
//                           and summarized after each run (scripts/lib/cpuProfile.ts); the profiler slows the
//                           processes a little, so compare seconds only between runs that both profile
// Agents, nginx, the users, the Vault servers and (without --keep) the files are
// removed at the end, on failure and on Ctrl-C.
import { ChildProcess, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { checkpointBreakdown, CheckpointBreakdown, formatBreakdown } from "./lib/checkpointBreakdown";
import { cpuByKind, CpuByKind, ProcessCpuSampler } from "./lib/processCpu";
import { CpuProfile, formatProfileSummary, summarizeProfile } from "./lib/cpuProfile";
import { generateStack, GeneratedStack } from "./lib/generateStack";
import { EngineStack, EngineTools, findEngine, killTree } from "../test/support/engine";
import { runningAsRoot, userMode } from "../test/support/hostUsers";
import { openSandbox, Sandbox } from "../test/support/sandbox";
import { planServing } from "../test/support/serving";
import { setupProductionLikeVault } from "../test/support/vaultAdmin";
import { startVaultServer, VaultServer } from "../test/support/vaultServer";

const STACK = "fleet";
const EPOCHS = { create: "fleet-1", rotation: "fleet-2", floor: "fleet-3" };

interface Options {
    apps: number[];
    keep: boolean;
    json?: string;
    timeoutSeconds: number;
    cpuProfDir?: string;
}

type PhaseName = "create" | "noopPreview" | "rotationPreview" | "rotationPreviewNoCheckpoints" | "rotationUp" | "rotationUpNoCheckpoints";

interface Phase {
    /** The CLI command line, as typed (without --stack, --non-interactive, --color). */
    command: string;
    epoch: string;
    checkpoints: boolean;
    seconds: number;
    /** The CLI's own summary (`to replace: 30`, `unchanged: 12`, `created: 40`). */
    changes: Record<string, number>;
    /** The checkpoint file's size after the run. */
    checkpointBytes: number;
    /** CPU seconds by process kind (CLI, language host, program, each plugin), sampled from /proc. */
    cpu: CpuByKind[];
}

interface SizeFigures {
    apps: number;
    /** Entries in the checkpoint after the create (stack, providers, components, custom resources). */
    resources: number;
    customResources: number;
    edgeProxy: boolean;
    phases: Partial<Record<PhaseName, Phase>>;
    /** The checkpoint file after the rotation `up` (phase 4). */
    checkpointBytes?: number;
    breakdown?: CheckpointBreakdown;
    /** Vault, sandbox and stack set up, before the first run. */
    setupSeconds: number;
    /** Everything for this size, teardown included. */
    totalSeconds: number;
}

class RunFailed extends Error {}

function usage(message?: string): never {
    if (message) process.stderr.write(`bench-fleet: ${message}\n`);
    process.stderr.write("usage: npm run bench:fleet -- [--apps 10,30] [--keep] [--json figures.json] [--timeout 3600] [--cpu-prof dir]\n");
    process.exit(2);
}

function parseArgs(argv: string[]): Options {
    const options: Options = { apps: [10, 30], keep: false, timeoutSeconds: 3600 };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = (): string => argv[++i] ?? usage(`${arg} needs a value`);
        if (arg === "--apps") options.apps = value().split(",").map((s) => Number(s.trim()));
        else if (arg === "--keep") options.keep = true;
        else if (arg === "--json") options.json = value();
        else if (arg === "--timeout") options.timeoutSeconds = Number(value());
        else if (arg === "--cpu-prof") options.cpuProfDir = path.resolve(value());
        else if (arg === "--help" || arg === "-h") usage();
        else usage(`unknown option ${arg}`);
    }
    if (options.apps.length === 0 || options.apps.some((n) => !Number.isInteger(n) || n < 1)) usage("--apps takes positive integers, e.g. --apps 10,30");
    if (!(options.timeoutSeconds > 0)) usage("--timeout takes a positive number of seconds");
    return options;
}

const log = (line: string) => process.stderr.write(`bench-fleet: ${line}\n`);
const since = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;

/** What is running now, for Ctrl-C; and the figures of the size under way (for --json when it fails). */
const live: { child?: ChildProcess; sandbox?: Sandbox; generated?: GeneratedStack; dirs: string[]; keep: boolean; figures?: SizeFigures } = { dirs: [], keep: false };

function killGroup(child: ChildProcess | undefined): void {
    if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // The CLI, its language host, the plugins (each in a process group of its own) and the host steps they started.
    killTree(child.pid);
}

function onSignal(signal: NodeJS.Signals): void {
    process.stderr.write(`\nbench-fleet: ${signal}: stopping pulumi, the Vault Agents, nginx, the users and the Vault server\n`);
    killGroup(live.child);
    try {
        live.sandbox?.close();
    } catch (e) {
        process.stderr.write(`bench-fleet: closing the sandbox: ${(e as Error).message}\n`);
    }
    live.generated?.cleanup();
    if (!live.keep) for (const d of live.dirs) fs.rmSync(d, { recursive: true, force: true });
    else if (live.dirs.length > 0) process.stderr.write(`bench-fleet: kept ${live.dirs[0]}\n`);
    // vaultServer.ts's exit handler kills the server and removes its directory.
    process.exit(130);
}

/** The tail of a failed run's output: from the CLI's `Diagnostics:` on, else its last lines. */
function failureText(output: string): string {
    const lines = output.trimEnd().split("\n");
    const at = lines.findIndex((l) => /^Diagnostics:/.test(l));
    const shown = at >= 0 ? lines.slice(at, at + 200) : lines.slice(-80);
    return shown.join("\n");
}

/** The `Resources:` block of the CLI's summary: `+ 40 created`, `+-30 to replace`, `12 unchanged`. */
function summaryCounts(output: string): Record<string, number> {
    const lines = output.split("\n");
    const start = lines.findIndex((l) => /^Resources:\s*$/.test(l));
    const counts: Record<string, number> = {};
    if (start < 0) return counts;
    for (const line of lines.slice(start + 1)) {
        const m = /^\s+(?:[-+~<>=]+\s*)?(\d+) (.+?)\s*$/.exec(line);
        if (!m) break;
        counts[m[2]] = (counts[m[2]] ?? 0) + Number(m[1]);
    }
    return counts;
}

/** One CLI run in its own process group, output to `logFile`; the wall seconds, or RunFailed with the output. */
function runPulumi(tools: EngineTools, stack: EngineStack, args: string[], extraEnv: Record<string, string>, logFile: string, timeoutSeconds: number): Promise<{ seconds: number; output: string; cpu: CpuByKind[] }> {
    const full = [...args, "--stack", STACK, "--non-interactive", "--color", "never"];
    const shown = `${Object.entries(extraEnv).map(([k, v]) => `${k}=${v} `).join("")}pulumi ${args.join(" ")}`;
    return new Promise((resolve, reject) => {
        const out = fs.openSync(logFile, "a");
        fs.writeSync(out, `$ ${shown}\n`);
        let output = "";
        const started = process.hrtime.bigint();
        const child = spawn(path.join(tools.cliDir, "pulumi"), full, { cwd: stack.projectDir, env: { ...stack.env, ...extraEnv }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
        live.child = child;
        const sampler = child.pid === undefined ? undefined : new ProcessCpuSampler(child.pid).start();
        const take = (d: Buffer) => {
            output += d.toString("utf8");
            fs.writeSync(out, d);
        };
        child.stdout.on("data", take);
        child.stderr.on("data", take);
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            killGroup(child);
        }, timeoutSeconds * 1000);
        child.on("error", (e) => {
            clearTimeout(timer);
            sampler?.stop();
            fs.closeSync(out);
            reject(new RunFailed(`${shown}: cannot start the CLI: ${e.message}`));
        });
        child.on("close", (code, signal) => {
            clearTimeout(timer);
            const seconds = since(started);
            const cpu = cpuByKind(sampler?.stop() ?? []);
            fs.closeSync(out);
            live.child = undefined;
            if (code === 0 && !timedOut) resolve({ seconds, output, cpu });
            else {
                const why = timedOut ? `stopped after the --timeout of ${timeoutSeconds} s` : `exit ${signal ?? code} after ${seconds.toFixed(1)} s`;
                reject(new RunFailed(`${shown} failed (${why}); its output${output.includes("\nDiagnostics:") ? " from Diagnostics on" : ", last lines"}:\n${failureText(output)}`));
            }
        });
    });
}

/** Each profile in `dir`, named by the node process it came from (the program, the dynamic providers' host). */
function profileSummaries(dir: string): string {
    const root = path.resolve(__dirname, "..");
    return fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".cpuprofile"))
        .map((f) => {
            const text = fs.readFileSync(path.join(dir, f), "utf8");
            const what = text.includes("@pulumi/pulumi/cmd/dynamic-provider") ? "dynamic providers" : text.includes("@pulumi/pulumi/cmd/run") ? "program" : "node";
            return `${what} (${f}): ${formatProfileSummary(summarizeProfile(JSON.parse(text) as CpuProfile, root))}`;
        })
        .join("\n");
}

/** The CLI's CPU profile, as `go tool pprof -top` prints its largest cumulative entries (Go is on this machine: the engine is built with it). */
function cliProfileSummary(tools: EngineTools, dir: string): string {
    const file = fs.readdirSync(dir).find((f) => /^cli\.\d+\.cpu$/.test(f));
    if (file === undefined) return "CLI: no profile written";
    const r = spawnSync("go", ["tool", "pprof", "-top", "-cum", "-nodecount=25", path.join(tools.cliDir, "pulumi"), path.join(dir, file)], { encoding: "utf8" });
    return `CLI (${file}):\n${r.status === 0 ? r.stdout.trim() : `go tool pprof failed: ${r.stderr}`}`;
}

function checkpointOf(stack: EngineStack): { text: string; bytes: number } {
    const text = stack.checkpointText();
    return { text, bytes: Buffer.byteLength(text, "utf8") };
}

/** `vault-rotation:kvSeedData.app-0001.owner=...`: a secret's leaves as `pulumi config set-all --path --secret` takes them. */
function secretPaths(key: string, value: string): string[] {
    const walk = (prefix: string, v: unknown): string[] =>
        typeof v === "object" && v !== null ? Object.entries(v).flatMap(([k, w]) => walk(`${prefix}.${/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k)}`, w)) : [`${prefix}=${String(v)}`];
    let parsed: unknown = value;
    try {
        parsed = JSON.parse(value);
    } catch {
        // a plain string secret
    }
    return walk(key, parsed);
}

async function benchSize(tools: EngineTools, work: string, apps: number, options: Options): Promise<SizeFigures> {
    const started = process.hrtime.bigint();
    let server: VaultServer | undefined;
    const sandboxDir = path.join(work, `sandbox-${apps}`);
    const engineDir = path.join(work, `engine-${apps}`);
    const logFile = path.join(work, `pulumi-${apps}.log`);
    const figures: SizeFigures = { apps, resources: 0, customResources: 0, edgeProxy: false, phases: {}, setupSeconds: 0, totalSeconds: 0 };
    live.figures = figures;
    try {
        log(`${apps} apps: a throwaway Vault dev-TLS server, PKI and KV as the rehearsal sets them up`);
        server = await startVaultServer({ log: (l) => log(`  ${l}`) });
        const generated = generateStack(apps, { epoch: EPOCHS.create, tmpRoot: work });
        live.generated = generated;
        const vaultConfig = JSON.parse(generated.config["vault-rotation:vault"]) as { pkiMount: string; issuerCommonName: string; kvMount: string };
        await setupProductionLikeVault(server, { pkiMount: vaultConfig.pkiMount, issuerCommonName: vaultConfig.issuerCommonName, kvV2Mount: vaultConfig.kvMount });
        const vault = { address: server.address, caCertFile: server.caCertFile, token: server.token };

        log(`${apps} apps: the sandbox (${userMode()}; systemctl and podman shims; nginx per app${runningAsRoot() ? " and the edge proxy" : "; no edge proxy: it needs a user of its own, run as root"})`);
        const plan = await planServing(vault, vaultConfig.pkiMount, generated.appNames);
        const sandbox = await openSandbox({ root: sandboxDir, config: generated.config, vault: { ...vault, vaultBin: server.vaultBin }, serve: plan });
        live.sandbox = sandbox;
        figures.edgeProxy = sandbox.serving?.edge !== undefined;

        // Plain keys into the stack file, the secrets (seed data) in one `config set-all`.
        const plain = Object.fromEntries(Object.entries(sandbox.config).filter(([k]) => !generated.secretKeys.includes(k)));
        const stack = await EngineStack.create({ tools, stack: STACK, config: plain, vaultToken: server.token, root: engineDir });
        const secrets = generated.secretKeys.filter((k) => sandbox.config[k] !== undefined).flatMap((k) => secretPaths(k, sandbox.config[k]).flatMap((p) => ["--secret", p]));
        if (secrets.length > 0) {
            const set = stack.cli(["config", "set-all", "--path", ...secrets]);
            if (set.status !== 0) throw new RunFailed(`pulumi config set-all (the secrets) failed: ${set.stderr}${set.stdout}`);
        }
        const setEpoch = (epoch: string) => {
            const r = stack.cli(["config", "set", "--path", "vault-rotation:rotation.epoch", epoch]);
            if (r.status !== 0) throw new RunFailed(`pulumi config set --path vault-rotation:rotation.epoch ${epoch} failed: ${r.stderr}${r.stdout}`);
        };
        figures.setupSeconds = since(started);

        const phase = async (name: PhaseName, label: string, args: string[], epoch: string, checkpoints = true): Promise<Phase> => {
            log(`${apps} apps: ${label} (pulumi ${args.join(" ")}${checkpoints ? "" : ", PULUMI_SKIP_CHECKPOINTS=true"}) ...`);
            const env: Record<string, string> = checkpoints ? {} : { PULUMI_SKIP_CHECKPOINTS: "true" };
            const profDir = options.cpuProfDir === undefined ? undefined : path.join(options.cpuProfDir, `${apps}-${name}`);
            if (profDir !== undefined) {
                // Fresh: the summaries read every profile in it.
                fs.rmSync(profDir, { recursive: true, force: true });
                fs.mkdirSync(profDir, { recursive: true });
                // node refuses --cpu-prof in NODE_OPTIONS; the preload starts the same profiler.
                env.NODE_OPTIONS = `--require ${JSON.stringify(path.join(__dirname, "lib", "cpuProfPreload.js"))}`;
                env.VAULT_ROTATION_CPU_PROF_DIR = profDir;
            }
            // The CLI's own Go profiles: --profiling <prefix> writes <prefix>.<pid>.cpu (and .mem, .trace).
            const cliArgs = profDir === undefined ? args : [...args, "--profiling", path.join(profDir, "cli")];
            const r = await runPulumi(tools, stack, cliArgs, env, logFile, options.timeoutSeconds);
            if (profDir !== undefined) log(`${apps} apps:   CPU profiles in ${profDir}:\n${profileSummaries(profDir)}\n${cliProfileSummary(tools, profDir)}`);
            const changes = summaryCounts(r.output);
            const p: Phase = { command: `pulumi ${args.join(" ")}`, epoch, checkpoints, seconds: r.seconds, changes, checkpointBytes: checkpointOf(stack).bytes, cpu: r.cpu };
            figures.phases[name] = p;
            log(`${apps} apps:   ${r.seconds.toFixed(1)} s; ${Object.entries(changes).map(([k, v]) => `${v} ${k}`).join(", ") || "(no summary printed)"}`);
            return p;
        };

        await phase("create", "1/5 create", ["up", "--yes", "--skip-preview"], EPOCHS.create);
        const created = JSON.parse(checkpointOf(stack).text) as { checkpoint: { latest?: { resources?: { custom?: boolean }[] } } };
        const resources = created.checkpoint.latest?.resources ?? [];
        figures.resources = resources.length;
        figures.customResources = resources.filter((r) => r.custom === true).length;
        await phase("noopPreview", "2/5 no-op preview", ["preview"], EPOCHS.create);
        setEpoch(EPOCHS.rotation);
        await phase("rotationPreview", `3/5 rotation preview, epoch ${EPOCHS.rotation}`, ["preview"], EPOCHS.rotation);
        // `npm run preview`: the engine serializes the snapshot after each step of a preview too.
        await phase("rotationPreviewNoCheckpoints", `3b/5 the same rotation preview without checkpoints`, ["preview"], EPOCHS.rotation, false);
        const rotated = await phase("rotationUp", `4/5 rotation up, epoch ${EPOCHS.rotation}`, ["up", "--yes", "--skip-preview"], EPOCHS.rotation);
        figures.checkpointBytes = rotated.checkpointBytes;
        figures.breakdown = checkpointBreakdown(checkpointOf(stack).text, apps);
        setEpoch(EPOCHS.floor);
        await phase("rotationUpNoCheckpoints", `5/5 rotation up without checkpoints, epoch ${EPOCHS.floor}`, ["up", "--yes", "--skip-preview"], EPOCHS.floor, false);
        return figures;
    } catch (e) {
        if (e instanceof RunFailed) e.message = `${apps} apps: ${e.message}`;
        throw e;
    } finally {
        killGroup(live.child);
        live.sandbox?.close();
        live.sandbox = undefined;
        await server?.stop();
        live.generated?.cleanup();
        live.generated = undefined;
        if (!options.keep) for (const d of [sandboxDir, engineDir, logFile]) fs.rmSync(d, { recursive: true, force: true });
        figures.totalSeconds = since(started);
        log(`${apps} apps: done in ${figures.totalSeconds.toFixed(1)} s (set-up ${figures.setupSeconds.toFixed(1)} s; agents, nginx and users stopped and removed, Vault server stopped)`);
    }
}

const int = (n: number | undefined) => (n === undefined ? "-" : Math.round(n).toLocaleString("en-US"));
const sec = (p: Phase | undefined) => (p === undefined ? "-" : p.seconds.toFixed(1));
const perApp = (p: Phase | undefined, apps: number) => (p === undefined ? "-" : (p.seconds / apps).toFixed(2));

function table(sizes: SizeFigures[]): string {
    const lines = [
        "| apps | resources | create s | no-op preview s | rotation preview s | rotation preview s (no checkpoints) | rotation up s | s/app | rotation up s (no checkpoints) | s/app | checkpoint bytes | bytes/app |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ];
    for (const f of sizes) {
        const p = f.phases;
        lines.push(
            `| ${f.apps} | ${f.resources} | ${sec(p.create)} | ${sec(p.noopPreview)} | ${sec(p.rotationPreview)} | ${sec(p.rotationPreviewNoCheckpoints)} | ${sec(p.rotationUp)} | ${perApp(p.rotationUp, f.apps)} | ${sec(p.rotationUpNoCheckpoints)} | ${perApp(p.rotationUpNoCheckpoints, f.apps)} | ${int(f.checkpointBytes)} | ${int(f.checkpointBytes === undefined ? undefined : f.checkpointBytes / f.apps)} |`,
        );
    }
    return lines.join("\n");
}

const PHASE_LABELS: [PhaseName, string][] = [
    ["create", "create"],
    ["noopPreview", "no-op preview"],
    ["rotationPreview", "rotation preview"],
    ["rotationPreviewNoCheckpoints", "rotation preview, no checkpoints"],
    ["rotationUp", "rotation up"],
    ["rotationUpNoCheckpoints", "no checkpoints"],
];

/** CPU seconds by process kind, one column per phase; "+ n" is what the kind's processes waited for in their children (host steps under the command plugin). */
function cpuTable(f: SizeFigures): string {
    const phases = PHASE_LABELS.filter(([n]) => f.phases[n]);
    const kinds = [...new Set(phases.flatMap(([n]) => f.phases[n]!.cpu.map((c) => c.kind)))];
    const cell = (n: PhaseName, kind: string) => {
        const c = f.phases[n]!.cpu.find((k) => k.kind === kind);
        if (!c) return "-";
        return `${c.seconds.toFixed(1)}${c.childrenSeconds >= 0.05 ? ` + ${c.childrenSeconds.toFixed(1)}` : ""}`;
    };
    const lines = [`| process (count in the last phase) | ${phases.map(([, l]) => `${l} CPU s`).join(" | ")} |`, `|---|${phases.map(() => "---|").join("")}`];
    for (const kind of kinds) {
        const last = phases.map(([n]) => f.phases[n]!.cpu.find((k) => k.kind === kind)).filter((c) => c !== undefined).pop();
        lines.push(`| ${kind} (${last?.processes ?? 0}) | ${phases.map(([n]) => cell(n, kind)).join(" | ")} |`);
    }
    lines.push(`| wall seconds | ${phases.map(([n]) => f.phases[n]!.seconds.toFixed(1)).join(" | ")} |`);
    return lines.join("\n");
}

function changesLine(f: SizeFigures): string {
    return `${f.apps} apps (${f.customResources} custom resources; edge proxy ${f.edgeProxy ? "on" : "off"}; ${f.totalSeconds.toFixed(0)} s in all): ${PHASE_LABELS
        .filter(([n]) => f.phases[n])
        .map(([n, label]) => `${label}: ${Object.entries(f.phases[n]!.changes).map(([k, v]) => `${v} ${k}`).join(", ")}`)
        .join("; ")}`;
}

async function main(): Promise<void> {
    const options = parseArgs(process.argv.slice(2));
    const found = findEngine();
    if (!found.tools) {
        process.stderr.write(`bench-fleet: ${found.missing}\n`);
        process.exit(1);
    }
    const tools = found.tools;
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-bench-fleet-"));
    // App users must pass through it to their homes.
    fs.chmodSync(work, 0o755);
    live.dirs = [work];
    live.keep = options.keep;
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);

    const started = process.hrtime.bigint();
    const sizes: SizeFigures[] = [];
    let failure: string | undefined;
    try {
        for (const apps of options.apps) sizes.push(await benchSize(tools, work, apps, options));
    } catch (e) {
        failure = e instanceof Error ? e.message : String(e);
    } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        if (!options.keep) fs.rmSync(work, { recursive: true, force: true });
    }

    const nodeSdk = (JSON.parse(fs.readFileSync(path.join(__dirname, "..", "node_modules", "@pulumi", "pulumi", "package.json"), "utf8")) as { version: string }).version;
    const environment = `Pulumi CLI ${tools.version}, Node.js SDK ${nodeSdk}, node ${process.version}, file backend, default parallelism, ${os.cpus().length} CPUs; ${userMode()}`;
    if (sizes.length > 0) {
        console.log(`\n${environment}`);
        console.log("this program (index.ts) on a fresh sandbox per size: real Vault Agents, nginx per app, the edge proxy as root; wall seconds of each CLI run\n");
        console.log(table(sizes));
        console.log("");
        for (const f of sizes) console.log(changesLine(f));
        for (const f of sizes) {
            console.log(`\nCPU by process, ${f.apps} apps (sampled from /proc; "+ n": CPU of the children the processes waited for, such as host steps; the CLI's may include plugins it reaped):\n`);
            console.log(cpuTable(f));
        }
        const largest = sizes[sizes.length - 1];
        if (largest.breakdown) {
            console.log(`\ncheckpoint after the rotation up, ${largest.apps} apps, by resource type and property (the file: ${int(largest.checkpointBytes)} bytes):\n`);
            console.log(formatBreakdown(largest.breakdown));
        }
    }
    if (options.keep) console.log(`\nkept ${work} (sandboxes, engine projects and backends, pulumi-<N>.log)`);
    if (options.json) {
        const failedSize = failure === undefined ? undefined : live.figures;
        fs.writeFileSync(options.json, `${JSON.stringify({ environment, options, sizes, failure, failedSize, totalSeconds: since(started) }, null, 2)}\n`);
        console.log(`figures written to ${options.json}`);
    }
    if (failure !== undefined) {
        process.stderr.write(`\nbench-fleet: FAILED: ${failure}\n`);
        process.exitCode = 1;
    }
}

main().catch((e: unknown) => {
    process.stderr.write(`bench-fleet: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
});
