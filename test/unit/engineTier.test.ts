// How the engine tier finds the engine, and how it says what is missing.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { findEngine, requiredPlugins } from "../support/engine";
import { REPO_ROOT } from "../support/harness";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vr-engine-tier-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function withEnv<T>(env: Record<string, string | undefined>, fn: () => T): T {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(env)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
    try {
        return fn();
    } finally {
        for (const [k, v] of Object.entries(saved)) {
            if (v === undefined) delete process.env[k];
            else process.env[k] = v;
        }
    }
}

it("npm run test:engine without the engine: one line naming both scripts, exit 1", () => {
    const empty = path.join(tmp, "empty-cache");
    fs.mkdirSync(empty);
    const env = { ...process.env, VAULT_ROTATION_CACHE: empty, VAULT_ROTATION_PULUMI_HOME: undefined, PULUMI_ENGINE_DIR: undefined };
    delete env.VAULT_ROTATION_PULUMI_HOME;
    delete env.PULUMI_ENGINE_DIR;
    const r = spawnSync("npx", ["ts-node", "--transpile-only", path.join(REPO_ROOT, "scripts", "test-engine.ts")], { cwd: REPO_ROOT, env, encoding: "utf8" });
    expect(r.status).toBe(1);
    const plugins = requiredPlugins().map((p) => `${p.name} ${p.version}`).join(" and ");
    expect(r.stderr.trim().split("\n")).toEqual([
        `test:engine: no Pulumi CLI (run scripts/get-pulumi-engine.sh); no ${plugins} plugin in ${empty}/pulumi-home (run scripts/get-pulumi-plugins.sh)`,
    ]);
    expect(r.stdout).toBe("");
});

it("finds an engine directory and a PULUMI_HOME holding both plugins", () => {
    const cli = path.join(tmp, "cli");
    fs.mkdirSync(cli);
    for (const bin of ["pulumi", "pulumi-language-nodejs", "pulumi-resource-pulumi-nodejs"]) {
        fs.writeFileSync(path.join(cli, bin), bin === "pulumi" ? "#!/bin/sh\necho v3.274.1\n" : "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    }
    const home = path.join(tmp, "home");
    const [vault, command] = requiredPlugins();
    const found = () => withEnv({ PULUMI_ENGINE_DIR: cli, VAULT_ROTATION_PULUMI_HOME: home }, () => findEngine());
    // Only the vault plugin: the command plugin is named as missing.
    fs.mkdirSync(path.join(home, "plugins", `resource-vault-v${vault.version}`), { recursive: true });
    fs.writeFileSync(path.join(home, "plugins", `resource-vault-v${vault.version}`, "pulumi-resource-vault"), "", { mode: 0o755 });
    expect(found().missing).toBe(`no command ${command.version} plugin in ${home} (run scripts/get-pulumi-plugins.sh)`);
    fs.mkdirSync(path.join(home, "plugins", `resource-command-v${command.version}`), { recursive: true });
    fs.writeFileSync(path.join(home, "plugins", `resource-command-v${command.version}`, "pulumi-resource-command"), "", { mode: 0o755 });
    expect(found()).toEqual({ tools: { cliDir: cli, pulumiHome: home, version: "v3.274.1" } });
});
