// A sandbox that stands in for the app hosts on this machine: every home is
// re-rooted under one directory and belongs to the app's own Unix user (a real
// unprivileged user per app when running as root; see hostUsers.ts),
// `systemctl` and `podman` are shims on the hosts' PATH (the systemctl shim
// really runs `vault agent` as the app user), and the stack's Vault connection
// points at a throwaway dev server. Apps on ssh hosts stay ssh hosts: their
// host must be a loopback address, and a real sshd (sshd.ts) on this machine
// stands in for the app host, so the host steps really travel over SSH, log in
// as the app user and check the pinned host key.
import * as fs from "fs";
import * as path from "path";
import { ConfigError, parseStackConfig, StackConfig } from "../../config";
import { DEFAULT_HOST_PATH } from "../../components/renderers/scripts";
import { REPO_ROOT } from "./harness";
import { AppUser, createAppUsers, makeOwnedDir, reachableDir, removeAppUsers, runningAsRoot, UserMode, userMode } from "./hostUsers";
import { appNginxConf, EDGE_CONTAINER, EDGE_SERVER_NAME, edgeNginxConf, nginxDirs, ServingPlan, stopNginx } from "./serving";
import { isLoopbackHost, SshdFixture, startSshd } from "./sshd";

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
    /** Which user model the host steps run under. */
    mode: UserMode;
    /** The app's Unix user. */
    user(app: string): AppUser;
    /** Where the systemctl shim keeps an app user's unit state (pids, logs, calls.log). */
    systemctlDir(app: string): string;
    /** Per-app podman shim directory (rootless podman is per user). */
    podmanDir(app: string): string;
    /** Home of an app inside the sandbox. */
    home(app: string): string;
    /** The agent's mTLS files as the host holds them (the key exists only there: it is generated on the host). */
    agentFiles(app: string): { certPem: string; keyPem: string };
    /** The PATH host steps run with (shims and vault first). */
    hostPath: string;
    /** The sshd standing in for the stack's ssh hosts (when it has any). */
    sshd?: SshdFixture;
    /** With a serving plan: each app's TLS endpoint, and the edge proxy (only with real users: it needs a user of its own). */
    serving?: { endpoints: Record<string, string>; edge?: { listen: string; serverName: string; user: AppUser; home: string; bundle: string } };
    /** Stops every agent the systemctl shim started. */
    stopAgents(): void;
    /** Stops the agents and sshd and removes the users this sandbox created (files and sshd.log stay for inspection). */
    close(): void;
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

/** A hard link where the filesystem allows it (the Vault binary is large), else a copy. */
function linkOrCopy(from: string, to: string): void {
    fs.rmSync(to, { force: true });
    try {
        fs.linkSync(from, to);
    } catch {
        fs.copyFileSync(from, to);
    }
    fs.chmodSync(to, 0o755);
}

function parseForSandbox(config: Record<string, string>): StackConfig {
    try {
        return parseFlat(config);
    } catch (e) {
        if (e instanceof ConfigError) throw new Error(`the stack is invalid:\n${e.problems.map((p) => `  - ${p}`).join("\n")}`);
        throw e;
    }
}

/** The loopback hosts of a stack's ssh apps (what an sshd fixture must listen on). */
export function sshHostsOf(config: Record<string, string>): string[] {
    return parseForSandbox(config).apps.flatMap((a) => ("ssh" in a.host ? [a.host.ssh.host] : []));
}

export interface SandboxOptions {
    root: string;
    config: Record<string, string>;
    vault: SandboxVault;
    /** Serve for real: nginx per app and, as root, an nginx edge proxy (test/support/serving.ts). */
    serve?: ServingPlan;
}

/**
 * prepareSandbox, with an sshd started first when the stack has ssh hosts (on
 * their loopback addresses); the sandbox's close() stops it again.
 */
export async function openSandbox(opts: SandboxOptions): Promise<Sandbox> {
    const hosts = sshHostsOf(opts.config);
    // Refuse non-loopback hosts before starting anything.
    checkSandboxable(parseForSandbox(opts.config), path.resolve(opts.root));
    const sshd = hosts.length > 0 ? await startSshd({ hosts }) : undefined;
    try {
        return prepareSandbox({ ...opts, sshd });
    } catch (e) {
        sshd?.stop();
        throw e;
    }
}

/** Problems that keep a stack out of the sandbox, each naming its key. */
function checkSandboxable(stack: StackConfig, homesRoot: string): void {
    const problems: string[] = [];
    stack.apps.forEach((app, i) => {
        if ("ssh" in app.host && !isLoopbackHost(app.host.ssh.host)) {
            problems.push(
                `apps[${i}].host.ssh.host: ${app.host.ssh.host} is not a loopback address; only ssh hosts on this machine (127.0.0.0/8, ::1, localhost) can be rehearsed`,
            );
        }
        const rerooted = path.resolve(homesRoot, `.${app.home}`);
        if (!rerooted.startsWith(`${homesRoot}${path.sep}`)) problems.push(`apps[${i}].home: ${app.home} would escape the sandbox ${homesRoot}`);
    });
    if (problems.length > 0) throw new Error(`cannot rehearse this stack:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
}

/**
 * Rewrites a stack for the sandbox and lays out users, homes, shims, units and
 * containers. Refuses stacks with ssh hosts off this machine or paths that would
 * leave the sandbox. Apps on (loopback) ssh hosts need `sshd`: their users get
 * a login shell and the fixture's client key, and the stack its port, host key
 * and private key.
 */
export function prepareSandbox(opts: SandboxOptions & { sshd?: SshdFixture }): Sandbox {
    const root = path.resolve(opts.root);
    const stack = parseForSandbox(opts.config);
    // App users must be able to reach their homes and the shims: when the
    // sandbox sits below a directory only root can enter, homes go elsewhere.
    fs.mkdirSync(root, { recursive: true });
    const homesRoot = reachableDir(root, "vault-rotation-homes-");
    // The homes root itself must be searchable too (mkdtemp makes 0700
    // directories): search only, so the app users can pass, not list it.
    if (runningAsRoot()) fs.chmodSync(homesRoot, (fs.statSync(homesRoot).mode & 0o7777) | 0o011);
    checkSandboxable(stack, homesRoot);
    const isSsh = (i: number) => "ssh" in stack.apps[i].host;
    const sshd = opts.sshd;
    if (stack.apps.some((_a, i) => isSsh(i)) && !sshd) throw new Error("prepareSandbox: the stack has ssh hosts: start an sshd fixture (openSandbox does)");

    const homeOf = (app: string) => {
        const a = stack.apps.find((x) => x.name === app);
        if (!a) throw new Error(`no app ${app} in the stack`);
        return path.resolve(homesRoot, `.${a.home}`);
    };
    // The edge proxy needs a user of its own (config refuses an app's): only where users can be made.
    const edgeHome = path.join(homesRoot, "edge-proxy");
    const withEdge = opts.serve !== undefined && runningAsRoot();
    const users = createAppUsers([
        ...stack.apps.map((a, i) => ({ app: a.name, home: homeOf(a.name), loginShell: isSsh(i) })),
        ...(withEdge ? [{ app: "edge", home: edgeHome }] : []),
    ]);
    const edgeUser = withEdge ? users.pop() : undefined;
    stack.apps.forEach((_a, i) => {
        if (isSsh(i)) sshd!.authorize(users[i].name);
    });
    const userOf = (app: string) => users[stack.apps.findIndex((a) => a.name === app)];
    const podmanDir = (app: string) => path.join(homeOf(app), ".local", "share", "podman-shim");
    const systemctlDir = (app: string) => path.join(homeOf(app), ".local", "state", "systemctl-shim");

    // What the hosts' PATH finds first: the shims and the Vault binary, in a
    // root-owned directory every app user can read.
    const binDir = path.join(homesRoot, "bin");
    fs.mkdirSync(binDir, { recursive: true, mode: 0o755 });
    for (const shim of fs.readdirSync(SHIMS_DIR)) linkOrCopy(path.join(SHIMS_DIR, shim), path.join(binDir, shim));
    linkOrCopy(opts.vault.vaultBin, path.join(binDir, "vault"));
    const hostPath = `${binDir}:${DEFAULT_HOST_PATH}`;

    for (const [i, app] of stack.apps.entries()) {
        const home = homeOf(app.name);
        const user = users[i];
        // Ancestors up to the sandbox stay root's (0755); the home and all below are the app user's.
        fs.mkdirSync(path.dirname(home), { recursive: true, mode: 0o755 });
        makeOwnedDir(home, user, 0o750);
        for (const d of [".config", ".config/systemd", ".config/systemd/user", ".local", ".local/share", ".local/share/podman-shim", ".local/state"]) {
            makeOwnedDir(path.join(home, d), user, 0o700);
        }
        // Like a unit file in ~/.config/systemd/user: how the agent service starts.
        const unit = path.join(home, ".config/systemd/user", `vault-agent-${app.name}.service`);
        fs.writeFileSync(
            unit,
            [
                "[Service]",
                `ExecStart=${binDir}/vault agent -config ${home}/vault/agent.hcl`,
                `Environment=PATH=${hostPath}`,
                `Environment=HOME=${home}`,
                "",
            ].join("\n"),
        );
        // The app's running containers: one labelled frontend (a real nginx when serving), and the edge
        // proxy. The app user cannot signal the edge's nginx (another user's process), and need not: the
        // edge trusts the issuing chain, not a leaf; its own reload is the edge-trust step's.
        const proxy = app.reload.proxy?.replace(/^podman:/, "");
        let web = `${app.name}-web ${app.reload.label}`;
        if (opts.serve) {
            const prefix = path.join(home, "nginx");
            for (const d of nginxDirs(prefix)) makeOwnedDir(d, user, 0o700);
            const conf = path.join(prefix, "nginx.conf");
            fs.writeFileSync(conf, appNginxConf({ prefix, port: opts.serve.appPorts[app.name], app: app.name, commonName: app.leaf.commonName, fullchain: path.join(home, "tls", `${app.name}.fullchain.pem`) }));
            if (runningAsRoot()) fs.chownSync(conf, user.uid, user.gid);
            web += ` nginx=${conf}`;
        }
        const containers = [web, ...(proxy ? [`${proxy} role=edge`] : [])];
        const containersFile = path.join(podmanDir(app.name), "containers");
        fs.writeFileSync(containersFile, `${containers.join("\n")}\n`);
        if (runningAsRoot()) for (const f of [unit, containersFile]) fs.chownSync(f, user.uid, user.gid);
    }

    let edgeConfig: Record<string, string> = {};
    let serving: Sandbox["serving"];
    if (opts.serve) {
        const endpoints = Object.fromEntries(stack.apps.map((a) => [a.name, `127.0.0.1:${opts.serve!.appPorts[a.name]}`]));
        serving = { endpoints };
        if (edgeUser) {
            const plan = opts.serve;
            makeOwnedDir(edgeHome, edgeUser, 0o750);
            for (const d of [".local", ".local/share", ".local/share/podman-shim", "tls"]) makeOwnedDir(path.join(edgeHome, d), edgeUser, 0o700);
            const prefix = path.join(edgeHome, "nginx");
            for (const d of nginxDirs(prefix)) makeOwnedDir(d, edgeUser, 0o700);
            const certFile = path.join(edgeHome, "tls", "edge.pem");
            const bundle = path.join(edgeHome, "tls", "upstream-ca.pem");
            const conf = path.join(prefix, "nginx.conf");
            const containers = path.join(edgeHome, ".local/share/podman-shim/containers");
            fs.writeFileSync(certFile, `${plan.edgeCertPem}${plan.edgeKeyPem}\n`, { mode: 0o600 });
            fs.writeFileSync(conf, edgeNginxConf({ prefix, port: plan.edgePort, certFile, bundle, apps: stack.apps.map((a) => ({ commonName: a.leaf.commonName, port: plan.appPorts[a.name] })) }));
            fs.writeFileSync(containers, `${EDGE_CONTAINER} role=edge nginx=${conf}\n`);
            for (const f of [certFile, conf, containers]) fs.chownSync(f, edgeUser.uid, edgeUser.gid);
            const listen = `127.0.0.1:${plan.edgePort}`;
            serving.edge = { listen, serverName: EDGE_SERVER_NAME, user: edgeUser, home: edgeHome, bundle };
            edgeConfig = {
                "vault-rotation:edge": JSON.stringify({
                    listen,
                    serverName: EDGE_SERVER_NAME,
                    reload: `podman:${EDGE_CONTAINER}`,
                    user: edgeUser.name,
                    home: edgeHome,
                    bundle,
                    host: { local: true, path: hostPath },
                }),
            };
        }
    }

    // The longest verification window (14d) unless the stack sets one: a test's runs compare "nothing
    // changed" across minutes, and a window that turned between two of them (a 12h or 24h one at
    // midnight) would re-verify every app. Verification itself is exercised with `every-run`.
    const rotation = JSON.parse(opts.config["vault-rotation:rotation"] ?? "{}") as Record<string, unknown>;
    const config = {
        ...opts.config,
        ...edgeConfig,
        "vault-rotation:rotation": JSON.stringify({ verifyEvery: "14d", ...rotation }),
        "vault:address": opts.vault.address,
        "vault:caCertFile": opts.vault.caCertFile,
        "vault-rotation:apps": JSON.stringify(
            JSON.parse(opts.config["vault-rotation:apps"]).map((a: Record<string, unknown>, i: number) => ({
                ...a,
                home: homeOf(stack.apps[i].name),
                user: users[i].name,
                host: isSsh(i) ? { ssh: { host: (a.host as { ssh: { host: string } }).ssh.host, port: sshd!.port, hostKey: sshd!.hostKey }, path: hostPath } : { local: true, path: hostPath },
                ...(serving ? { serve: { endpoint: serving.endpoints[stack.apps[i].name] } } : {}),
            })),
        ),
        ...(sshd ? { "vault-rotation:sshPrivateKey": sshd.clientPrivateKey } : {}),
    };

    const stopAgents = () => {
        for (const app of stack.apps) {
            const dir = systemctlDir(app.name);
            for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
                if (!f.endsWith(".pid")) continue;
                const pid = Number(fs.readFileSync(path.join(dir, f), "utf8"));
                try {
                    process.kill(pid, "SIGTERM");
                } catch {
                    // already gone
                }
                fs.rmSync(path.join(dir, f), { force: true });
            }
        }
    };
    return {
        root,
        config,
        stack: parseFlat(config),
        mode: userMode(),
        user: userOf,
        systemctlDir,
        podmanDir,
        home: homeOf,
        agentFiles(app) {
            const mtls = path.join(homeOf(app), "vault", "mtls");
            return { certPem: fs.readFileSync(path.join(mtls, "agent.crt"), "utf8"), keyPem: fs.readFileSync(path.join(mtls, "agent.key"), "utf8") };
        },
        hostPath,
        sshd,
        serving,
        stopAgents,
        close() {
            stopAgents();
            for (const app of stack.apps) stopNginx(path.join(homeOf(app.name), "nginx"));
            if (edgeUser) stopNginx(path.join(edgeHome, "nginx"));
            sshd?.stop(path.join(root, "sshd.log"));
            // Homes put outside an unreachable sandbox are this sandbox's too: nothing is left behind in /tmp.
            if (homesRoot !== root) fs.rmSync(homesRoot, { recursive: true, force: true });
            removeAppUsers(edgeUser ? [...users, edgeUser] : users);
        },
    };
}
