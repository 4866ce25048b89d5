// One applyProgram run in a process of its own, for tests that expect the run
// to FAIL: a failed registration also surfaces inside the Pulumi SDK as
// unhandled rejections of every dependent output, which jest would pin on the
// test itself. Reads `{config, vault}` as JSON on stdin (it holds the stack's
// secrets and the Vault token: never argv or the environment) and prints
// `{ok, error?, steps?}` as JSON on stdout.
import { applyProgram } from "./applier";

async function main(): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    process.on("unhandledRejection", () => undefined);
    try {
        const r = await applyProgram({ config: input.config, vault: input.vault, stack: "local", log: () => undefined });
        process.stdout.write(JSON.stringify({ ok: true, steps: r.steps.map((s) => `${s.action} ${s.name}`) }));
    } catch (e) {
        process.stdout.write(JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) }));
    }
}

void main().then(() => process.exit(0));
