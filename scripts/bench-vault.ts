// `npm run bench:vault` (or `npx ts-node --transpile-only scripts/bench-vault.ts`):
// what a run costs against a real Vault. A benchmark, not a test: it prints
// numbers and fails only when a run fails.
//
// It starts its own throwaway dev-TLS server (PKI root + intermediate, KV v2),
// then for a generated local stack of 1 and of 20 apps measures a full apply
// (every Vault object, the host files, real Vault Agents started by the
// systemctl shim rendering each leaf, the checks) and a no-op re-apply with the
// same epoch. Last, the cost of one agent cert login over mTLS, N times.
// Agents, sandboxes and the server are always cleaned up, also on failure.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { applyProgram, ApplierState } from "../test/support/applier";
import { prepareSandbox, Sandbox } from "../test/support/sandbox";
import { setupProductionLikeVault, vaultRequest } from "../test/support/vaultAdmin";
import { startVaultServer, VaultServer } from "../test/support/vaultServer";
import { generateStack } from "./lib/generateStack";

const SIZES = [1, 20];
const LOGINS = 50;
const ISSUER_CN = "Bench Intermediate CA";

interface ApplyFigures {
    apps: number;
    resources: number;
    fullSeconds: number;
    noopSeconds: number;
    /** Steps the re-apply did not leave alone (must be 0). */
    noopChanged: number;
}

function seconds(since: bigint): number {
    return Number(process.hrtime.bigint() - since) / 1e9;
}

/**
 * The generated stack with every app renamed `<prefix>-app-NNNN` (names, users,
 * homes, CNs, domains, seed data): each size gets Vault objects of its own on
 * the shared server.
 */
function renamed(config: Record<string, string>, prefix: string): Record<string, string> {
    const out = { ...config };
    for (const key of ["vault-rotation:apps", "vault-rotation:kvSeedData"]) {
        if (out[key] !== undefined) out[key] = out[key].replace(/\bapp-(\d{4})\b/g, `${prefix}-app-$1`);
    }
    return out;
}

function outputsOf(state: ApplierState, name: string): Record<string, unknown> {
    const entry = Object.values(state.resources).find((e) => e.name === name);
    if (!entry) throw new Error(`no resource named ${name} in the state`);
    return entry.outputs;
}

function percentile(sorted: number[], p: number): number {
    // Nearest-rank: the smallest value with at least p% of the samples at or below it.
    return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

let currentSandbox: Sandbox | undefined;

async function main(): Promise<void> {
    const log = (line: string) => process.stderr.write(`bench-vault: ${line}\n`);
    const started = process.hrtime.bigint();
    let server: VaultServer | undefined;
    const applies: ApplyFigures[] = [];
    let loginMs: number[] = [];

    // Ctrl-C: stop the agents of the stack being measured (vaultServer.ts stops the server).
    const onSignal = () => {
        currentSandbox?.close();
        if (currentSandbox) fs.rmSync(currentSandbox.root, { recursive: true, force: true });
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);

    try {
        server = await startVaultServer({ log });
        await setupProductionLikeVault(server, { issuerCommonName: ISSUER_CN });
        const vault = { address: server.address, caCertFile: server.caCertFile, token: server.token, vaultBin: server.vaultBin };

        for (const apps of SIZES) {
            const generated = generateStack(apps, { epoch: "bench-1" });
            const root = fs.mkdtempSync(path.join(os.tmpdir(), `vault-rotation-bench-${apps}-`));
            try {
                const sandbox = prepareSandbox({ root, config: renamed(generated.config, `s${apps}`), vault });
                currentSandbox = sandbox;
                const apply = (state?: ApplierState) =>
                    applyProgram({ config: sandbox.config, secretKeys: generated.secretKeys, state, vault, stack: `bench-${apps}`, log: () => undefined });

                log(`${apps} app(s): full apply (real agents)`);
                let t = process.hrtime.bigint();
                const first = await apply();
                const fullSeconds = seconds(t);

                log(`${apps} app(s): no-op re-apply`);
                t = process.hrtime.bigint();
                const again = await apply(first.state);
                const noopSeconds = seconds(t);
                const noopChanged = again.steps.filter((s) => s.action !== "same").length;
                applies.push({ apps, resources: first.steps.length, fullSeconds, noopSeconds, noopChanged });

                if (apps === SIZES[0]) {
                    const app = sandbox.stack.apps[0].name;
                    const creds = {
                        clientCertPem: String(outputsOf(first.state, `${app}-agent-cert`).certificate),
                        clientKeyPem: sandbox.agentFiles(app).keyPem,
                    };
                    const loginPath = `auth/${sandbox.stack.vault.certAuthPath}/login`;
                    log(`cert login x${LOGINS} (${app}, a new TLS connection each, as an agent would)`);
                    const tokens: string[] = [];
                    for (let i = 0; i <= LOGINS; i++) {
                        const t0 = process.hrtime.bigint();
                        const res = await vaultRequest<{ auth?: { client_token: string } }>(vault, "POST", loginPath, { name: `agent-${app}` }, { token: null, ...creds });
                        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
                        if (res.status !== 200 || !res.body.auth) throw new Error(`cert login ${i}: ${res.status} ${res.text}`);
                        tokens.push(res.body.auth.client_token);
                        // The first one warms up (module loading, CA parsing): not counted.
                        if (i > 0) loginMs.push(ms);
                    }
                    for (const token of tokens) await vaultRequest(vault, "POST", "auth/token/revoke-self", undefined, { token });
                }
            } finally {
                currentSandbox?.close();
                currentSandbox = undefined;
                fs.rmSync(root, { recursive: true, force: true });
                generated.cleanup();
            }
        }
    } finally {
        process.removeListener("SIGINT", onSignal);
        process.removeListener("SIGTERM", onSignal);
        if (server) await server.stop();
    }

    loginMs = [...loginMs].sort((a, b) => a - b);
    const mean = loginMs.reduce((s, v) => s + v, 0) / loginMs.length;
    const rows: string[][] = [["measure", "apps", "resources", "value"]];
    for (const a of applies) {
        rows.push(["full apply (s)", String(a.apps), String(a.resources), a.fullSeconds.toFixed(2)]);
        rows.push(["  per app (s)", String(a.apps), "", (a.fullSeconds / a.apps).toFixed(2)]);
        rows.push([`no-op re-apply (s), ${a.noopChanged} changed`, String(a.apps), String(a.resources), a.noopSeconds.toFixed(2)]);
    }
    rows.push([`cert login mean (ms), N=${loginMs.length}`, "1", "", mean.toFixed(1)]);
    rows.push([`cert login p95 (ms), N=${loginMs.length}`, "1", "", percentile(loginMs, 95).toFixed(1)]);
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
    process.stdout.write(`${line(rows[0])}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n${rows.slice(1).map(line).join("\n")}\n`);
    process.stdout.write(`(Vault dev-TLS server on loopback, ${os.cpus().length} CPUs; total ${seconds(started).toFixed(1)} s)\n`);

    const noisy = applies.filter((a) => a.noopChanged > 0);
    if (noisy.length > 0) {
        process.stderr.write(`bench-vault: a re-apply with the same epoch changed something for ${noisy.map((a) => `${a.apps} app(s)`).join(", ")}\n`);
        process.exitCode = 1;
    }
}

main().catch((e: unknown) => {
    process.stderr.write(`bench-vault: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
});
