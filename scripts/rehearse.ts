// `npm run rehearse [-- --stack <file>] [--sandbox <dir>] [--clean] [--json <file>] [--engine pulumi|applier]`
// A complete rotation of every app of a stack, for real, on this machine (ssh hosts: loopback only, served by a real sshd),
// performed by the real Pulumi engine when it and its plugins are installed, else by the applier.
import * as fs from "fs";
import { formatReport, rehearse } from "./lib/rehearsal";
import type { EngineChoice } from "../test/support/runner";

function usage(message?: string): never {
    if (message) process.stderr.write(`rehearse: ${message}\n`);
    process.stderr.write("usage: npm run rehearse -- [--stack Pulumi.local.yaml] [--sandbox .rehearsal] [--clean] [--json report.json] [--engine pulumi|applier]\n");
    process.exit(2);
}

function parseArgs(argv: string[]) {
    const opts: { stackFile?: string; sandboxDir?: string; clean: boolean; json?: string; engine?: EngineChoice } = { clean: false };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = () => argv[++i] ?? usage(`${arg} needs a value`);
        if (arg === "--stack") opts.stackFile = value();
        else if (arg === "--sandbox") opts.sandboxDir = value();
        else if (arg === "--json") opts.json = value();
        else if (arg === "--clean") opts.clean = true;
        else if (arg === "--engine") {
            const engine = value();
            if (engine !== "pulumi" && engine !== "applier") usage(`--engine takes pulumi or applier (got ${engine})`);
            opts.engine = engine;
        }
        else if (arg === "--help" || arg === "-h") usage();
        else usage(`unknown argument ${arg}`);
    }
    return opts;
}

async function main(): Promise<void> {
    const opts = parseArgs(process.argv.slice(2));
    const started = Date.now();
    const report = await rehearse({ ...opts, log: (line) => process.stdout.write(`${line}\n`) });
    let text = formatReport(report);
    if (opts.clean) text = text.replace(/sandbox kept for inspection: .*/, `sandbox removed (--clean)`);
    process.stdout.write(`${text}\n(${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    if (opts.json) {
        fs.writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
        process.stdout.write(`report written to ${opts.json}\n`);
    }
    process.exitCode = report.ok ? 0 : 1;
}

main().catch((e: unknown) => {
    process.stderr.write(`rehearse: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
});
