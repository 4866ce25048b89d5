// `npm run bench:reload`: what clients see while a rotation runs. A benchmark,
// not a test: it prints figures and fails only when the setup fails.
//
// The rehearsal stack is served for real (nginx per app as its user, an nginx
// edge proxy as its own user; see test/support/serving.ts). wrk sends requests
// through the edge proxy to every app (Host headers in turn), on loopback only,
// for a fixed time: once with nothing happening (the baseline), once while a
// full rotation (new epoch: new agent certs, agent restarts, new leaves, nginx
// reloads) runs inside that window. Target: 0 failed requests.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { applyProgram, ApplierState } from "../test/support/applier";
import { loadStackConfig, REPO_ROOT, withEpoch } from "../test/support/harness";
import { runningAsRoot } from "../test/support/hostUsers";
import { prepareSandbox, Sandbox } from "../test/support/sandbox";
import { planServing } from "../test/support/serving";
import { setupProductionLikeVault } from "../test/support/vaultAdmin";
import { startVaultServer, VaultServer } from "../test/support/vaultServer";

const SECONDS = Number(process.env.BENCH_RELOAD_SECONDS ?? 20);
const THREADS = 2;
const CONNECTIONS = 16;

interface WrkFigures {
    requests: number;
    non2xx: number;
    socketErrors: { connect: number; read: number; write: number; timeout: number };
    p50: string;
    p99: string;
    requestsPerSecond: number;
}

/** Reads wrk's summary (with --latency). */
export function parseWrk(out: string): WrkFigures {
    const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
    const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    return {
        requests: num(/(\d+) requests in /),
        non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
        socketErrors: socket ? { connect: Number(socket[1]), read: Number(socket[2]), write: Number(socket[3]), timeout: Number(socket[4]) } : { connect: 0, read: 0, write: 0, timeout: 0 },
        p50: /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "?",
        p99: /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "?",
        requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    };
}

function runWrk(url: string, script: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const child = spawn("wrk", [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script, url], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (d) => (out += String(d)));
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}:\n${out}`))));
    });
}

function row(label: string, f: WrkFigures): string {
    const s = f.socketErrors;
    const failed = f.non2xx + s.connect + s.read + s.write + s.timeout;
    return `| ${label} | ${f.requests} | ${f.requestsPerSecond.toFixed(0)} | ${f.non2xx} | ${s.connect}/${s.read}/${s.write}/${s.timeout} | ${failed} | ${f.p50} | ${f.p99} |`;
}

async function main(): Promise<void> {
    if (!runningAsRoot()) {
        process.stderr.write("bench:reload needs root: the edge proxy runs as a user of its own, and each app's nginx as its app's user\n");
        process.exit(2);
    }
    if (spawnSync("wrk", ["--version"]).error) {
        process.stderr.write("bench:reload needs wrk: apt-get install wrk\n");
        process.exit(2);
    }
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-bench-reload-"));
    let server: VaultServer | undefined;
    let sandbox: Sandbox | undefined;
    try {
        server = await startVaultServer({ log: (l) => process.stderr.write(`[vault] ${l}\n`) });
        const base = loadStackConfig(path.join(REPO_ROOT, "Pulumi.local.yaml"));
        const vaultConfig = JSON.parse(base["vault-rotation:vault"]) as { pkiMount: string; issuerCommonName: string; kvMount: string };
        await setupProductionLikeVault(server, { pkiMount: vaultConfig.pkiMount, issuerCommonName: vaultConfig.issuerCommonName, kvV2Mount: vaultConfig.kvMount });
        const vault = { address: server.address, caCertFile: server.caCertFile, token: server.token };
        const apps = (JSON.parse(base["vault-rotation:apps"]) as { name: string }[]).map((a) => a.name);
        const plan = await planServing(vault, vaultConfig.pkiMount, apps);
        sandbox = prepareSandbox({ root, config: base, vault: { ...vault, vaultBin: server.vaultBin }, serve: plan });
        const sb = sandbox;
        let state: ApplierState | undefined;
        const apply = async (epoch: string) => {
            const r = await applyProgram({ config: withEpoch(sb.config, epoch), state, vault, stack: "local", log: () => undefined });
            state = r.state;
            return r;
        };
        await apply("bench-1");

        const hosts = sb.stack.apps.map((a) => a.leaf.commonName);
        const script = path.join(root, "hosts.lua");
        fs.writeFileSync(
            script,
            `local hosts = { ${hosts.map((h) => JSON.stringify(h)).join(", ")} }\nlocal i = 0\nrequest = function()\n  i = i % #hosts + 1\n  return wrk.format("GET", "/", { Host = hosts[i] })\nend\n`,
        );
        const url = `https://${sb.serving!.edge!.listen}/`;
        process.stderr.write(`baseline: ${SECONDS}s of requests through the edge proxy ${url} to ${hosts.join(", ")}\n`);
        const baseline = parseWrk(await runWrk(url, script));

        process.stderr.write(`rotation: the same load while a full rotation of ${apps.join(", ")} runs\n`);
        const load = runWrk(url, script);
        await new Promise((r) => setTimeout(r, 1000));
        const started = Date.now();
        const rotated = await apply("bench-2");
        const rotationSeconds = (Date.now() - started) / 1000;
        const during = parseWrk(await load);
        const replaced = rotated.steps.filter((s) => s.action === "replace").length;

        const lines = [
            "",
            `Requests through the edge proxy (nginx) to ${apps.length} apps (nginx), wrk -t${THREADS} -c${CONNECTIONS} -d${SECONDS}s, loopback, ${os.cpus().length} CPUs:`,
            "",
            "| run | requests | req/s | non-2xx | socket errors connect/read/write/timeout | failed | p50 | p99 |",
            "|---|---|---|---|---|---|---|---|",
            row("baseline (no rotation)", baseline),
            row(`during a full rotation (${rotationSeconds.toFixed(1)}s, ${replaced} replaced)`, during),
            "",
        ];
        if (rotationSeconds > SECONDS - 1) lines.push(`note: the rotation took ${rotationSeconds.toFixed(1)}s, longer than the load window; raise BENCH_RELOAD_SECONDS`);
        process.stdout.write(`${lines.join("\n")}\n`);
    } finally {
        sandbox?.close();
        await server?.stop();
        fs.rmSync(root, { recursive: true, force: true });
    }
}

if (require.main === module) {
    main().catch((e: unknown) => {
        process.stderr.write(`bench:reload failed: ${e instanceof Error ? e.stack : String(e)}\n`);
        process.exit(1);
    });
}
