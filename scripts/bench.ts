// `npm run bench`: how program evaluation under mocks scales with the number of
// apps. A benchmark, not a test: it prints numbers and a linearity verdict and
// fails only when an evaluation fails.
//
// Each measurement runs in a fresh child process (`--child <N>`), so one size's
// heap does not inflate the next one's peak RSS and the SDK's module-level
// state (stores, provider caches, leak candidates) starts clean every time.
// Outside jest, evaluateProgram serializes the dynamic providers' closures for
// real (V8 inspector), as `pulumi up` does; the child reports which it saw.
import { spawnSync } from "child_process";
import * as os from "os";
import * as path from "path";
import { generateStack } from "./lib/generateStack";
import type { NewResource, Registration } from "../test/support/harness";

const REPO_ROOT = path.resolve(__dirname, "..");
const RESULT_PREFIX = "BENCH_RESULT ";
const DEFAULT_SIZES = [2, 50, 200];
/** A per-app cost within this factor of the smaller size's counts as linear. */
const LINEAR_FACTOR = 1.5;
const CHILD_TIMEOUT_MS = 10 * 60 * 1000;

/** What one child measures for one evaluation. */
interface RunResult {
    apps: number;
    resources: number;
    seconds: number;
    peakRssMiB: number;
    /** RSS just before the evaluation started (node + ts-node + this script). */
    startRssMiB: number;
    /** "real" when a dynamic resource carried a serialized provider, "stubbed" for the jest stub. */
    closureSerialization: "real" | "stubbed" | "none";
    /** What one app costs the engine and its checkpoint (averaged over the apps). */
    perApp: AppCost;
}

/** One app's footprint in what the engine registers and saves. */
interface AppCost {
    /** Registrations under the app's AppRotation, components included. */
    resources: number;
    /** Custom resources (what the engine steps and checkpoints). */
    custom: number;
    dynamic: number;
    /** Bytes of serialized `__provider` per dynamic resource type (short type name -> bytes). */
    providerBytes: Record<string, number>;
    /** Secret properties: secret-marked inputs plus additionalSecretOutputs, per resource, summed. */
    secretValues: number;
    /** Custom resources whose inputs or outputs hold the agent private key (mock key text found in them). */
    keyHolders: string[];
    /** JSON bytes of inputs + outputs of the app's custom resources: what one app adds to a checkpoint. */
    checkpointBytes: number;
}

interface SizeSummary {
    apps: number;
    resources: number;
    seconds: number;
    peakRssMiB: number;
    startRssMiB: number;
    runs: number;
    closureSerialization: RunResult["closureSerialization"] | "mixed";
    perApp: AppCost;
}

function median(values: number[]): number {
    const s = [...values].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function parsePositiveInt(text: string, what: string): number {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer (got ${JSON.stringify(text)})`);
    return n;
}

// ---------------------------------------------------------------- child

/**
 * Per-app figures from one evaluation: each registration is attributed to the
 * AppRotation above it; stack-level resources (auth method, KV mount) are not
 * any app's. Output state is the mock's, which echoes the inputs like the real
 * providers do (dynamic providers return their inputs with their outputs).
 */
function appCosts(registrations: Registration[], states: Map<string, Record<string, unknown>>): AppCost {
    const byUrn = new Map(registrations.map((r) => [r.urn, r]));
    const appOf = (r: Registration): string | undefined => {
        for (let cur: Registration | undefined = r; cur; cur = byUrn.get(cur.parentUrn)) {
            if (cur.type === "vault-rotation:components:AppRotation") return cur.urn;
        }
        return undefined;
    };
    const groups = new Map<string, Registration[]>();
    for (const r of registrations) {
        const app = appOf(r);
        if (app) groups.set(app, [...(groups.get(app) ?? []), r]);
    }
    const costs = [...groups.values()].map((regs): AppCost => {
        const custom = regs.filter((r) => r.custom);
        const dynamic = custom.filter((r) => r.type.startsWith("pulumi-nodejs:dynamic/"));
        const providerBytes: Record<string, number> = {};
        for (const r of dynamic) providerBytes[r.type.split(":").pop()!] = String(r.inputs.__provider ?? "").length;
        const stateText = (r: Registration) => JSON.stringify({ inputs: r.inputs, outputs: states.get(r.urn) ?? {} });
        // Where the agent key could sit in state: a private key in any input or output
        // (the SSH login key of a remote command's connection aside), or a host step
        // fed on stdin. The key is generated on the host, so none is expected.
        const withoutConnection = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== "connection"));
        const holdsKey = (r: Registration) =>
            /PRIVATE KEY-----/.test(JSON.stringify([withoutConnection(r.inputs), withoutConnection(states.get(r.urn) ?? {})])) ||
            (r.type.startsWith("command:") && r.inputs.stdin !== undefined);
        return {
            resources: regs.length,
            custom: custom.length,
            dynamic: dynamic.length,
            providerBytes,
            secretValues: custom.reduce((n, r) => n + new Set([...r.secretInputs, ...r.additionalSecretOutputs]).size, 0),
            keyHolders: custom.filter(holdsKey).map((r) => `${r.type.split(":").pop()} ${r.name}`),
            checkpointBytes: custom.reduce((n, r) => n + Buffer.byteLength(stateText(r)), 0),
        };
    });
    const mean = (f: (c: AppCost) => number) => Math.round(costs.reduce((n, c) => n + f(c), 0) / Math.max(costs.length, 1));
    return {
        resources: mean((c) => c.resources),
        custom: mean((c) => c.custom),
        dynamic: mean((c) => c.dynamic),
        providerBytes: costs[0]?.providerBytes ?? {},
        secretValues: mean((c) => c.secretValues),
        keyHolders: costs[0]?.keyHolders ?? [],
        checkpointBytes: mean((c) => c.checkpointBytes),
    };
}

async function child(apps: number): Promise<void> {
    // Loaded here, not at the top: the parent never evaluates, so it never pays for the SDK.
    const { evaluateProgram, defaultNewResource } = await import("../test/support/harness");
    const stack = generateStack(apps);
    try {
        const states = new Map<string, Record<string, unknown>>();
        const newResource: NewResource = async (args, registration) => {
            const result = await defaultNewResource(args, registration);
            states.set(registration.urn, result.state);
            return result;
        };
        const startRss = process.memoryUsage().rss;
        const started = process.hrtime.bigint();
        const evaluation = await evaluateProgram({ config: stack.config, secretKeys: stack.secretKeys, newResource });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        // maxRSS is in KiB on Linux and macOS.
        const peakRssMiB = process.resourceUsage().maxRSS / 1024;

        const dynamic = evaluation.registrations.find((r) => r.type.startsWith("pulumi-nodejs:dynamic/"));
        const providerText = dynamic?.inputs.__provider;
        const closureSerialization: RunResult["closureSerialization"] =
            typeof providerText !== "string" ? "none" : providerText.includes("exports.handler = undefined;") ? "stubbed" : "real";

        const result: RunResult = {
            apps,
            resources: evaluation.registrations.length,
            seconds,
            peakRssMiB,
            startRssMiB: startRss / (1024 * 1024),
            closureSerialization,
            perApp: appCosts(evaluation.registrations, states),
        };
        process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
    } finally {
        stack.cleanup();
    }
}

// ---------------------------------------------------------------- parent

function runChild(apps: number): RunResult {
    const proc = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", __filename, "--child", String(apps)], {
        cwd: REPO_ROOT,
        encoding: "utf8",
        timeout: CHILD_TIMEOUT_MS,
        maxBuffer: 64 * 1024 * 1024,
        env: process.env,
    });
    const line = (proc.stdout ?? "")
        .split("\n")
        .reverse()
        .find((l) => l.startsWith(RESULT_PREFIX));
    if (proc.status !== 0 || line === undefined) {
        const why = proc.error ? proc.error.message : proc.signal ? `signal ${proc.signal}` : `exit code ${proc.status}`;
        const tail = `${proc.stdout ?? ""}\n${proc.stderr ?? ""}`.trim().split("\n").slice(-30).join("\n");
        throw new Error(`evaluation of ${apps} apps failed (${why}):\n${tail}`);
    }
    return JSON.parse(line.slice(RESULT_PREFIX.length)) as RunResult;
}

function pad(text: string, width: number): string {
    return text.padStart(width);
}

function printTable(rows: SizeSummary[]): void {
    const header = ["apps", "resources", "seconds", "ms/app", "peak RSS MiB", "KiB/app", "runs"];
    const widths = [6, 10, 9, 8, 13, 9, 5];
    const lines = rows.map((r) => [
        String(r.apps),
        String(r.resources),
        r.seconds.toFixed(2),
        ((r.seconds * 1000) / r.apps).toFixed(1),
        r.peakRssMiB.toFixed(0),
        ((r.peakRssMiB * 1024) / r.apps).toFixed(0),
        String(r.runs),
    ]);
    console.log(header.map((h, i) => pad(h, widths[i])).join(" "));
    console.log(widths.map((w) => "-".repeat(w)).join(" "));
    for (const l of lines) console.log(l.map((c, i) => pad(c, widths[i])).join(" "));
}

/** The per-app footprint, per size: identical figures at every size are what linear means here. */
function printAppCosts(rows: SizeSummary[]): void {
    console.log("per app (one app's registrations, mock output state):");
    const header = ["apps", "resources", "custom", "dynamic", "__provider B (max)", "secrets", "key copies", "checkpoint B"];
    const widths = [6, 10, 7, 8, 19, 8, 11, 13];
    console.log(header.map((h, i) => pad(h, widths[i])).join(" "));
    console.log(widths.map((w) => "-".repeat(w)).join(" "));
    for (const r of rows) {
        const c = r.perApp;
        const cells = [r.apps, c.resources, c.custom, c.dynamic, Math.max(0, ...Object.values(c.providerBytes)), c.secretValues, c.keyHolders.length, c.checkpointBytes];
        console.log(cells.map((v, i) => pad(String(v), widths[i])).join(" "));
    }
    const last = rows[rows.length - 1]?.perApp;
    if (last) {
        console.log(`__provider bytes per dynamic resource: ${Object.entries(last.providerBytes).map(([t, b]) => `${t} ${b}`).join(", ") || "none"}`);
        console.log(`resources holding the agent key: ${last.keyHolders.join(", ") || "none"}`);
    }
}

function parent(sizes: number[], runsOverride: number | undefined): void {
    const started = Date.now();
    console.log(
        `vault-rotation bench: program evaluation under mocks (test/support/harness.ts, default mock), ` +
            `node ${process.version}, ${os.cpus().length} CPUs`,
    );
    console.log(`each run is a fresh child process; medians of the runs below\n`);

    const summaries: SizeSummary[] = [];
    for (const apps of sizes) {
        const runs = runsOverride ?? (apps <= 50 ? 3 : 2);
        const results: RunResult[] = [];
        for (let i = 0; i < runs; i++) {
            const r = runChild(apps);
            results.push(r);
            console.log(
                `  ${pad(String(apps), 4)} apps, run ${i + 1}/${runs}: ${r.seconds.toFixed(2)} s, ` +
                    `peak RSS ${r.peakRssMiB.toFixed(0)} MiB, ${r.resources} resources`,
            );
        }
        const modes = new Set(results.map((r) => r.closureSerialization));
        summaries.push({
            apps,
            resources: results[0].resources,
            seconds: median(results.map((r) => r.seconds)),
            peakRssMiB: median(results.map((r) => r.peakRssMiB)),
            startRssMiB: median(results.map((r) => r.startRssMiB)),
            runs,
            closureSerialization: modes.size === 1 ? results[0].closureSerialization : "mixed",
            perApp: results[0].perApp,
        });
    }

    console.log("");
    printTable(summaries);
    console.log("");
    printAppCosts(summaries);
    console.log("");

    const modes = new Set(summaries.map((s) => s.closureSerialization));
    const mode = modes.size === 1 ? [...modes][0] : "mixed";
    console.log(
        mode === "real"
            ? "closure serialization of dynamic providers: real (V8 inspector, cached per provider object as in `pulumi up`)"
            : `closure serialization of dynamic providers: ${mode} (NOT a real evaluation's cost)`,
    );
    console.log(`RSS before evaluating (node + ts-node): ~${median(summaries.map((s) => s.startRssMiB)).toFixed(0)} MiB, included in peak RSS`);

    const bySize = [...summaries].sort((a, b) => a.apps - b.apps);
    if (bySize.length >= 2) {
        const big = bySize[bySize.length - 1];
        const small = bySize[bySize.length - 2];
        const msPerApp = (s: SizeSummary) => (s.seconds * 1000) / s.apps;
        const kibPerApp = (s: SizeSummary) => (s.peakRssMiB * 1024) / s.apps;
        const ratio = msPerApp(big) / msPerApp(small);
        // Below 1/LINEAR_FACTOR the smaller size is dominated by the fixed start-up cost: not a scaling problem.
        const verdict = ratio > LINEAR_FACTOR ? "NOT linear" : ratio < 1 / LINEAR_FACTOR ? "sub-linear: fixed cost dominates the smaller size" : "linear";
        console.log(`per-app cost ${big.apps} vs ${small.apps} apps: ${ratio.toFixed(2)}x (${verdict})`);
        console.log(`per-app peak RSS ${big.apps} vs ${small.apps} apps: ${(kibPerApp(big) / kibPerApp(small)).toFixed(2)}x`);
        // The increments, free of the fixed start-up cost that the per-app columns spread over the apps.
        const dApps = big.apps - small.apps;
        console.log(
            `marginal cost ${small.apps} -> ${big.apps} apps: ${(((big.seconds - small.seconds) * 1000) / dApps).toFixed(1)} ms/app, ` +
                `${(((big.peakRssMiB - small.peakRssMiB) * 1024) / dApps).toFixed(0)} KiB/app peak RSS`,
        );
    }
    console.log(`total bench time ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

// ---------------------------------------------------------------- main

function main(argv: string[]): Promise<void> | void {
    let sizes = DEFAULT_SIZES;
    let runs: number | undefined;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = () => {
            const v = argv[++i];
            if (v === undefined) throw new Error(`${arg} needs a value`);
            return v;
        };
        if (arg === "--child") return child(parsePositiveInt(value(), "--child"));
        if (arg === "--sizes") sizes = value().split(",").map((s) => parsePositiveInt(s.trim(), "--sizes entry"));
        else if (arg === "--runs") runs = parsePositiveInt(value(), "--runs");
        else if (arg === "--help" || arg === "-h") {
            console.log("usage: npm run bench -- [--sizes 2,50,200] [--runs N]");
            return;
        } else throw new Error(`unknown argument ${JSON.stringify(arg)} (try --help)`);
    }
    parent(sizes, runs);
}

Promise.resolve()
    .then(() => main(process.argv.slice(2)))
    .catch((e: unknown) => {
        console.error(e instanceof Error ? e.message : e);
        process.exitCode = 1;
    });
