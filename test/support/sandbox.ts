// A sandbox that stands in for the app hosts on this machine: every home is
// re-rooted under one directory, `systemctl` and `podman` are shims on PATH
// (the systemctl shim really runs `vault agent`), and the stack's Vault
// connection points at a throwaway dev server.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ConfigError, parseStackConfig, StackConfig } from "../../config";
import { REPO_ROOT } from "./harness";

export const SHIMS_DIR = path.join(REPO_ROOT, "test", "shims");

export interface SandboxVault {
    address: string;
    caCertFile: string;
    vaultBin: string;
}

export interface Sandbox {
    root: string;
    /** The stack's flat config, rewritten to run inside the sandbox. */
    config: Record<string, string>;
    /** The parsed, rewritten stack. */
    stack: StackConfig;
    /** Environment for host commands (shims first on PATH). */
    hostEnv: Record<string, string>;
    systemctlDir: string;
    /** Per-app podman shim directory (rootless podman is per user). */
    podmanDir(app: string): string;
    /** Home of an app inside the sandbox. */
    home(app: string): string;
    /** Stops every agent the systemctl shim started. */
    stopAgents(): void;
}

/** Parses the three `vault-rotation:` keys of a flat config (validation happens again in the program). */
function parseFlat(config: Record<string, string>): StackConfig {
    const get = (k: string) => (config[k] === undefined ? undefined : JSON.parse(config[k]));
    return parseStackConfig({
        rotation: get("vault-rotation:rotation"),
        vault: { ...get("vault-rotation:vault"), address: config["vault:address"], caCertFile: config["vault:caCertFile"] },
        apps: get("vault-rotation:apps"),
    });
}

/**
 * Rewrites a stack for the sandbox and lays out shims, units and containers.
 * Refuses stacks whose hosts are not local or whose paths would leave the sandbox.
 */
export function prepareSandbox(opts: { root: string; config: Record<string, string>; vault: SandboxVault }): Sandbox {
    const root = path.resolve(opts.root);
    let stack: StackConfig;
    try {
        stack = parseFlat(opts.config);
    } catch (e) {
        if (e instanceof ConfigError) throw new Error(`the stack is invalid:\n${e.problems.map((p) => `  - ${p}`).join("\n")}`);
        throw e;
    }
    const problems: string[] = [];
    stack.apps.forEach((app, i) => {
        if (!("local" in app.host)) problems.push(`apps[${i}].host: only local hosts can be rehearsed on this machine (got ssh)`);
        const rerooted = path.resolve(root, `.${app.home}`);
        if (!rerooted.startsWith(`${root}${path.sep}`)) problems.push(`apps[${i}].home: ${app.home} would escape the sandbox ${root}`);
    });
    if (problems.length > 0) throw new Error(`cannot rehearse this stack:\n${problems.map((p) => `  - ${p}`).join("\n")}`);

    const user = os.userInfo().username;
    const systemctlDir = path.join(root, "systemd-user");
    fs.mkdirSync(systemctlDir, { recursive: true });
    const homeOf = (app: string) => {
        const a = stack.apps.find((x) => x.name === app);
        if (!a) throw new Error(`no app ${app} in the stack`);
        return path.resolve(root, `.${a.home}`);
    };
    const podmanDir = (app: string) => path.join(root, "podman", app);
    const vaultBinDir = path.dirname(opts.vault.vaultBin);
    const basePath = `${SHIMS_DIR}:${vaultBinDir}:/usr/local/bin:/usr/bin:/bin`;

    const apps = stack.apps.map((app) => ({ ...app, home: homeOf(app.name), user }));
    for (const app of stack.apps) {
        const home = homeOf(app.name);
        fs.mkdirSync(home, { recursive: true, mode: 0o750 });
        // Like a unit file in ~/.config/systemd/user: how the agent service starts.
        fs.writeFileSync(
            path.join(systemctlDir, `vault-agent-${app.name}.service`),
            [
                "[Service]",
                `ExecStart=${opts.vault.vaultBin} agent -config ${home}/vault/agent.hcl`,
                `Environment=PATH=${basePath}`,
                `Environment=PODMAN_SHIM_DIR=${podmanDir(app.name)}`,
                `Environment=HOME=${home}`,
                "",
            ].join("\n"),
        );
        // The app's running containers: one labelled frontend, and the edge proxy.
        fs.mkdirSync(podmanDir(app.name), { recursive: true });
        const proxy = app.reload.proxy?.replace(/^podman:/, "");
        const containers = [`${app.name}-web ${app.reload.label}`, ...(proxy ? [`${proxy} role=edge`] : [])];
        fs.writeFileSync(path.join(podmanDir(app.name), "containers"), `${containers.join("\n")}\n`);
    }

    const config = {
        ...opts.config,
        "vault:address": opts.vault.address,
        "vault:caCertFile": opts.vault.caCertFile,
        "vault-rotation:apps": JSON.stringify(JSON.parse(opts.config["vault-rotation:apps"]).map((a: Record<string, unknown>, i: number) => ({ ...a, home: apps[i].home, user }))),
    };

    return {
        root,
        config,
        stack: parseFlat(config),
        hostEnv: { PATH: basePath, SYSTEMCTL_SHIM_DIR: systemctlDir },
        systemctlDir,
        podmanDir,
        home: homeOf,
        stopAgents() {
            for (const f of fs.existsSync(systemctlDir) ? fs.readdirSync(systemctlDir) : []) {
                if (!f.endsWith(".pid")) continue;
                const pid = Number(fs.readFileSync(path.join(systemctlDir, f), "utf8"));
                try {
                    process.kill(pid, "SIGTERM");
                } catch {
                    // already gone
                }
                fs.rmSync(path.join(systemctlDir, f), { force: true });
            }
        },
    };
}
