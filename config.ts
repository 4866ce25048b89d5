// The stack-config contract (DESIGN.md, "Stack config contract"), parsed once with zod.
//
// Everything that later ends up in a shell script, an HCL file or a Vault path is
// restricted here to a strict pattern; the renderers quote it again where they use it.
import { X509Certificate } from "crypto";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

/** Vault duration: one or more number+unit groups, e.g. `72h`, `30m`, `1h30m`. */
const DURATION = /^(\d+(s|m|h|d))+$/;
const NAME = /^[a-z][a-z0-9-]*$/;
const MOUNT = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LABEL_SELECTOR = /^[A-Za-z0-9_.\/-]+=[A-Za-z0-9_.:\/-]+$/;
const PROXY = /^podman:[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const SIGNAL = /^(SIG)?[A-Z0-9]+$/;
const EPOCH = /^[A-Za-z0-9._:-]{1,64}$/;
const CN_TEXT = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;
/**
 * A stack's name prefix ("" means none): one lowercase word, no '-', so that
 * `<prefix>-<app>` splits one way only (prefixes "eu1" and "eu1-x" would both
 * name app "x-y" / "y" as `eu1-x-y`).
 */
const NAME_PREFIX = /^([a-z][a-z0-9]*)?$/;

/** Seconds in a Vault duration string (validated by DURATION first). */
export function durationSeconds(duration: string): number {
    const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
    let total = 0;
    for (const m of duration.matchAll(/(\d+)([smhd])/g)) {
        total += Number(m[1]) * units[m[2]];
    }
    return total;
}

/** A DNS name that is not a wildcard, not an IP address and not localhost. */
export function dnsNameProblem(name: string): string | undefined {
    if (name.length === 0 || name.length > 253) return "must be a DNS name of 1 to 253 characters";
    if (name.includes("*")) return "must not be a wildcard";
    if (/^[0-9.]+$/.test(name) || name.includes(":")) return "must not be an IP address";
    const labels = name.split(".");
    if (!labels.every((l) => DNS_LABEL.test(l))) {
        return "must be a lowercase DNS name (labels of a-z, 0-9 and inner '-', separated by '.')";
    }
    if (labels[0] === "localhost" || labels[labels.length - 1] === "localhost") return "must not be localhost";
    if (/^[0-9]+$/.test(labels[labels.length - 1])) return "must not end in a numeric label";
    return undefined;
}

const dnsName = z.string().superRefine((value, ctx) => {
    const problem = dnsNameProblem(value);
    if (problem) ctx.addIssue({ code: "custom", message: `${problem} (got ${JSON.stringify(value)})` });
});

function duration(minSeconds: number, maxSeconds: number, what: string) {
    return z
        .string()
        .regex(DURATION, { message: "must be a Vault duration such as 72h or 30m" })
        .superRefine((value, ctx) => {
            const s = durationSeconds(value);
            if (s < minSeconds || s > maxSeconds) {
                ctx.addIssue({
                    code: "custom",
                    message: `${what} must be between ${minSeconds}s and ${maxSeconds}s (got ${value} = ${s}s)`,
                });
            }
        });
}

const homePath = z
    .string()
    .regex(/^\/[A-Za-z0-9._\/-]*$/, { message: "must be an absolute path of letters, digits, '.', '_', '-' and '/'" })
    .refine((p) => !p.split("/").some((seg) => seg === ".." || seg === "."), { message: "must not contain '.' or '..' segments" })
    .refine((p) => !p.includes("//") && (p === "/" || !p.endsWith("/")), { message: "must be normalised (no '//' and no trailing '/')" })
    .refine((p) => p !== "/", { message: "must not be the root directory" });

/**
 * PATH for the host steps' bodies (run as the app user): absolute directories,
 * colon-separated. Every one of them must be writable by root only.
 */
const hostPath = z
    .string()
    .regex(/^\/[A-Za-z0-9._\/-]*(:\/[A-Za-z0-9._\/-]*)*$/, { message: "must be absolute directories separated by ':' (letters, digits, '.', '_', '-', '/')" })
    .refine((p) => !p.split(/[:/]/).some((seg) => seg === ".."), { message: "must not contain '..' segments" });

/** Key types a pinned host key may have (what `ssh-keyscan -t <type>` prints). */
export const HOST_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"] as const;

/**
 * Why a pinned host key line is not acceptable, or undefined. The line is
 * `<type> <base64>` exactly as the host's `/etc/ssh/ssh_host_<type>_key.pub`
 * starts (no host name in front, no comment behind): the base64 blob must
 * decode to an SSH public key of the type the line names, so a truncated paste
 * or a key of another type fails here, not at the first connection.
 */
export function hostKeyProblem(line: string): string | undefined {
    const m = /^([a-z0-9-]+) ([A-Za-z0-9+/]+={0,2})$/.exec(line);
    if (!m) return "must be one line '<type> <base64>' (e.g. 'ssh-ed25519 AAAAC3Nz...'), without host name or comment";
    const [, type, b64] = m;
    if (!(HOST_KEY_TYPES as readonly string[]).includes(type)) return `key type ${type} is not one of ${HOST_KEY_TYPES.join(", ")}`;
    const blob = Buffer.from(b64, "base64");
    // An SSH public key blob starts with its type name as a length-prefixed string.
    const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
    const inner = len > 0 && blob.length >= 4 + len ? blob.subarray(4, 4 + len).toString("latin1") : "";
    if (inner !== type) return `the base64 part is not a ${type} public key (it names ${inner === "" ? "nothing" : JSON.stringify(inner)})`;
    if (type === "ssh-ed25519" && blob.length !== 51) return "the base64 part is not a complete ssh-ed25519 key (wrong length)";
    return undefined;
}

/**
 * Where the app lives: the Pulumi runner itself (`local`: the runner *is* the
 * app host), or a host reached over SSH. Over SSH the runner logs in as the app
 * user itself (no sudo, see README "Host kinds and the user model"): `ssh.user`
 * may be omitted, and when given must be `apps[i].user` (checked in appSchema).
 */
const hostSchema = z.union([
    z.object({ local: z.literal(true), path: hostPath.optional() }).strict(),
    z
        .object({
            ssh: z
                .object({
                    host: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^[0-9a-fA-F:.]+$/, {
                        message: "must be a hostname or an IP address",
                    }),
                    port: z.number().int().min(1).max(65535).default(22),
                    user: z.string().regex(NAME, { message: "must match [a-z][a-z0-9-]*" }).optional(),
                    hostKey: z.string().superRefine((line, ctx) => {
                        const problem = hostKeyProblem(line);
                        if (problem) ctx.addIssue({ code: "custom", message: `${problem}; pin the host's own key (README: "Pinning a host key")` });
                    }),
                })
                .strict(),
            path: hostPath.optional(),
        })
        .strict(),
]);

/** System directories no app home may be or live under (a home is the app user's to change). */
const SYSTEM_DIRS = ["/etc", "/usr", "/bin", "/sbin", "/boot", "/proc", "/sys", "/dev", "/run", "/var/lib", "/root"];

/** Why a home is not acceptable as an app user's home, or undefined. */
export function systemHomeProblem(home: string): string | undefined {
    const top = home.split("/")[1] ?? "";
    if (top.startsWith("lib")) return `must not be under /${top} (a system directory)`;
    const dir = SYSTEM_DIRS.find((d) => home === d || home.startsWith(`${d}/`));
    return dir ? `must not be under ${dir} (a system directory)` : undefined;
}

/** One ssh endpoint (host and port): two apps there must pin the same host key. */
function sameHostId(host: { local: true } | { ssh: { host: string; port: number } }): string {
    return "ssh" in host ? `ssh:${host.ssh.host.toLowerCase()}:${host.ssh.port}` : "local";
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|::1)$/i;

/**
 * One machine: homes and users collide there. The runner's own machine is
 * `local` and every ssh host on a loopback address (any port); other ssh hosts
 * by name (any port: two sshd on one host are one machine). Two different names
 * for one machine cannot be seen from here.
 */
function machineId(host: { local: true } | { ssh: { host: string; port: number } }): string {
    if (!("ssh" in host) || LOOPBACK_HOST.test(host.ssh.host)) return "local";
    return `ssh:${host.ssh.host.toLowerCase()}`;
}

/** `host:port` of a TLS listener (a DNS name or IPv4 address, and a port). */
const ENDPOINT = /^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})$/;
const endpoint = z
    .string()
    .regex(ENDPOINT, { message: "must be host:port (a DNS name or IPv4 address, and a port)" })
    .refine((e) => {
        const port = Number(e.slice(e.lastIndexOf(":") + 1));
        return port >= 1 && port <= 65535;
    }, { message: "port must be 1-65535" });

/** The user a host step runs as: never root. */
const unixUser = z
    .string()
    .regex(NAME, { message: "must match [a-z][a-z0-9-]*" })
    .max(32)
    .refine((u) => u !== "root", { message: "must not be root: host steps run as this user, and a compromised app must not be root" });

/** A home a host step may work in: absolute, normalised, not a system directory. */
const userHome = homePath.superRefine((home, ctx) => {
    const problem = systemHomeProblem(home);
    if (problem) ctx.addIssue({ code: "custom", message: `${problem} (got ${home})` });
});

/**
 * The edge proxy in front of the apps (runbook Part 4): where clients reach it,
 * its own TLS name, how it is reloaded, and the upstream trust bundle this
 * program keeps equal to the PKI's issuing chain, written as `user` on `host`.
 */
const edgeSchema = z
    .object({
        listen: endpoint,
        serverName: dnsName,
        reload: z.string().regex(PROXY, { message: "must be podman:<container-name>" }),
        /** `signal` when the proxy re-reads its upstream trust on a signal (nginx: SIGHUP), `restart` when it cannot. */
        trustReload: z.enum(["signal", "restart"]).default("signal"),
        signal: z.string().regex(SIGNAL, { message: "must be a signal name such as SIGHUP" }).default("SIGHUP"),
        user: unixUser,
        home: userHome,
        bundle: z.string().regex(/^\/[A-Za-z0-9._\/-]+$/, { message: "must be an absolute path" }),
        host: hostSchema,
    })
    .strict()
    .superRefine((edge, ctx) => {
        if ("ssh" in edge.host && edge.host.ssh.user !== undefined && edge.host.ssh.user !== edge.user) {
            ctx.addIssue({ code: "custom", path: ["host", "ssh", "user"], message: `must be the edge's user ${edge.user} (got ${edge.host.ssh.user}): the runner logs in as that user itself; omit it` });
        }
        if (!edge.bundle.startsWith(`${edge.home}/`) || edge.bundle.split("/").some((seg) => seg === ".." || seg === ".")) {
            ctx.addIssue({ code: "custom", path: ["bundle"], message: `must be a normalised path inside edge.home (${edge.home}), which the edge user owns (got ${edge.bundle})` });
        }
    });

const AGENT_TTL_MAX = 14 * 86400; // an agent login cert lives days, not months
const LEAF_TTL_MAX = 90 * 86400;

const appSchema = z
    .object({
        name: z.string().regex(NAME, { message: "must match [a-z][a-z0-9-]*" }).max(40),
        // This app's own epoch (an emergency): changing it rotates this app alone (appEpoch()).
        epoch: z.string().regex(EPOCH, { message: "must be 1-64 characters of letters, digits, '.', '_', ':' and '-'" }).optional(),
        user: unixUser,
        home: userHome,
        host: hostSchema,
        agent: z
            .object({
                commonName: dnsName,
                ttl: duration(600, AGENT_TTL_MAX, "agent.ttl"),
                markerPolicy: z.boolean().default(true),
                debugPolicy: z.boolean().default(false),
            })
            .strict(),
        leaf: z
            .object({
                commonName: dnsName,
                altNames: z.array(dnsName).default([]),
                allowedDomains: z.array(dnsName).min(1),
                ttl: duration(3600, LEAF_TTL_MAX, "leaf.ttl"),
            })
            .strict(),
        kv: z.object({ access: z.boolean().default(false), seed: z.boolean().default(false) }).strict().default({ access: false, seed: false }),
        /** Where the app's TLS listener answers (SNI = leaf CN), and its Host name through the edge proxy. */
        serve: z
            .object({
                endpoint,
                edgeHost: dnsName.optional(),
                // What the check through the edge asks for, directly and through the edge: the answers must be equal.
                path: z
                    .string()
                    .regex(/^\/[A-Za-z0-9._~/-]*$/, { message: "must be an absolute URL path of letters, digits and ._~/- (e.g. /healthz)" })
                    .optional(),
            })
            .strict()
            .optional(),
        // The node_exporter textfile for this app (default defaultMetricsTextfile()): inside the home,
        // in a directory of its own that the post-hook and the verification create (0755).
        metricsTextfile: z
            .string()
            .regex(/^\/[A-Za-z0-9._\/-]+\.prom$/, { message: "must be an absolute path of letters, digits and ._/- ending in .prom (node_exporter reads *.prom)" })
            .optional(),
        reload: z
            .object({
                label: z.string().regex(LABEL_SELECTOR, { message: "must be key=value without whitespace or quotes" }),
                proxy: z.string().regex(PROXY, { message: "must be podman:<container-name>" }).optional(),
                signal: z.string().regex(SIGNAL, { message: "must be a signal name such as SIGHUP" }).default("SIGHUP"),
            })
            .strict(),
    })
    .strict()
    .superRefine((app, ctx) => {
        const allowed = new Set(app.leaf.allowedDomains);
        if (!allowed.has(app.leaf.commonName)) {
            ctx.addIssue({ code: "custom", path: ["leaf", "commonName"], message: `${app.leaf.commonName} is not in leaf.allowedDomains` });
        }
        app.leaf.altNames.forEach((n, i) => {
            if (!allowed.has(n)) ctx.addIssue({ code: "custom", path: ["leaf", "altNames", i], message: `${n} is not in leaf.allowedDomains` });
        });
        if ("ssh" in app.host && app.host.ssh.user !== undefined && app.host.ssh.user !== app.user) {
            ctx.addIssue({
                code: "custom",
                path: ["host", "ssh", "user"],
                message: `must be this app's user ${app.user} (got ${app.host.ssh.user}): the runner logs in as the app user itself, never as another user with sudo; omit it to use ${app.user}`,
            });
        }
        if (app.metricsTextfile !== undefined) {
            const f = app.metricsTextfile;
            const dir = f.slice(0, f.lastIndexOf("/"));
            if (!dir.startsWith(`${app.home}/`) || f.split("/").some((seg) => seg === ".." || seg === ".")) {
                ctx.addIssue({ code: "custom", path: ["metricsTextfile"], message: `must be a normalised path in a directory inside home (${app.home}), which the app user owns (got ${f})` });
            } else if (["/vault", "/tls", "/vault/mtls", "/vault/hooks", "/vault/render", "/vault/ca", "/vault/templates"].some((d) => dir === `${app.home}${d}`)) {
                ctx.addIssue({ code: "custom", path: ["metricsTextfile"], message: `must be in a directory of its own (made 0755 so node_exporter can read it), not ${dir}, which holds the agent's or the app's files` });
            }
        }
        if (app.kv.seed && !app.kv.access) {
            ctx.addIssue({ code: "custom", path: ["kv", "seed"], message: "seeding needs kv.access: true" });
        }
    });

const stackSchema = z
    .object({
        rotation: z
            .object({
                epoch: z.string().regex(EPOCH, { message: "must be 1-64 characters of letters, digits, '.', '_', ':' and '-'" }).optional(),
                every: duration(3600, 366 * 86400, "rotation.every").optional(),
                runInterval: duration(600, AGENT_TTL_MAX, "rotation.runInterval"),
                // How often a run re-verifies every app without rotating (default: runInterval), or
                // "every-run". A run in a later window than the last verification verifies again.
                verifyEvery: z.union([z.literal("every-run"), duration(600, AGENT_TTL_MAX, "rotation.verifyEvery")]).optional(),
                renewBeforeSeconds: z.number().int().min(60).optional(),
                leafMinRemaining: duration(60, LEAF_TTL_MAX, "rotation.leafMinRemaining").default("24h"),
                waitSeconds: z.number().int().min(5).max(3600).default(120),
                stepTimeoutSeconds: z.number().int().min(30).max(7200).optional(),
                // An incident: each rotation also revokes the leaf it replaced, once the new one is served.
                revokePreviousLeaf: z.boolean().optional(),
            })
            .strict()
            .refine((r) => r.epoch !== undefined || r.every !== undefined, { message: "set rotation.epoch, rotation.every, or both" })
            .refine((r) => r.stepTimeoutSeconds === undefined || r.stepTimeoutSeconds >= r.waitSeconds + 30, {
                path: ["stepTimeoutSeconds"],
                message: "must leave the rotate step its rotation.waitSeconds plus 30s (to restart, check and put back)",
            }),
        vault: z
            .object({
                address: z.string().regex(/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, { message: "must be https://host[:port]" }),
                agentAddress: z.string().regex(/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, { message: "must be https://host[:port]" }).optional(),
                // Optional here: without it the CA comes from VAULT_CACERT (validateStackInputs).
                caCertFile: z.string().regex(/^\/[A-Za-z0-9._\/-]+$/, { message: "must be an absolute path" }).optional(),
                pkiMount: z.string().regex(MOUNT, { message: "must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*" }),
                issuerCommonName: z.string().regex(CN_TEXT, { message: "must be letters, digits, spaces, '.', '_' and '-'" }),
                certAuthPath: z.string().regex(MOUNT, { message: "must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*" }),
                kvMount: z.string().regex(MOUNT, { message: "must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*" }),
                // Removed: a second Vault identity in one run (the JWT login next to VAULT_TOKEN).
                jwtAuth: z
                    .unknown()
                    .optional()
                    .refine((v) => v === undefined, {
                        message:
                            "is no longer read: a Pulumi Deployment gets VAULT_TOKEN from the stack's ESC environment (deploy/README.md, \"Vault credentials\"), an operator from their own shell; remove this key",
                    }),
            })
            .strict(),
        apps: z.array(appSchema).min(1),
        edge: edgeSchema.optional(),
        // Sharding: stacks that share a Vault each set their own prefix; "" (the
        // declared default) is none. Prepended to every Vault object name (lib/naming.ts).
        namePrefix: z
            .string()
            .regex(NAME_PREFIX, { message: "must be one lowercase word of letters and digits starting with a letter, no '-' (e.g. eu1)" })
            .max(16)
            .optional()
            .transform((p) => (p === "" ? undefined : p)),
    })
    .superRefine((stack, ctx) => {
        const firstIndex = new Map<string, number>();
        const unique = (key: "name" | "agentCn", value: string, path: (string | number)[]) => {
            const id = `${key}:${value}`;
            const seen = firstIndex.get(id);
            if (seen !== undefined) {
                ctx.addIssue({ code: "custom", path, message: `duplicate ${JSON.stringify(value)}, already used by apps[${seen}]` });
            } else {
                firstIndex.set(id, Number(path[1]));
            }
        };
        stack.apps.forEach((app, i) => {
            unique("name", app.name, ["apps", i, "name"]);
            unique("agentCn", app.agent.commonName, ["apps", i, "agent", "commonName"]);
        });
        // One app must not reach another's files or names: no shared or nested
        // homes on one host, no leaf name another app's role may issue, no agent
        // CN that any leaf role may issue.
        stack.apps.forEach((app, i) => {
            stack.apps.forEach((other, j) => {
                if (j >= i || machineId(app.host) !== machineId(other.host)) return;
                if (app.home === other.home) {
                    ctx.addIssue({ code: "custom", path: ["apps", i, "home"], message: `${app.home} is also apps[${j}].home: every app needs a home of its own` });
                } else if (app.home.startsWith(`${other.home}/`) || other.home.startsWith(`${app.home}/`)) {
                    ctx.addIssue({ code: "custom", path: ["apps", i, "home"], message: `${app.home} and apps[${j}].home (${other.home}) are nested: homes must not contain each other` });
                }
            });
        });
        const edge = stack.edge;
        if (edge) {
            stack.apps.forEach((app, i) => {
                app.leaf.allowedDomains.forEach((d, k) => {
                    if (d === edge.serverName) {
                        ctx.addIssue({ code: "custom", path: ["apps", i, "leaf", "allowedDomains", k], message: `${d} is edge.serverName: the app's agent could issue the edge proxy's own certificate` });
                    }
                });
                // The hook runs as the app user and reaches only that user's podman; the edge
                // proxy is the edge user's container, and a new app leaf needs no edge reload
                // (it verifies each upstream connection against the bundle this program keeps).
                if (app.reload.proxy !== undefined && app.reload.proxy === edge.reload) {
                    ctx.addIssue({
                        code: "custom",
                        path: ["apps", i, "reload", "proxy"],
                        message: `${app.reload.proxy} is edge.reload: the edge proxy runs as ${edge.user}, and this app's hook (run as ${app.user}) cannot reach that user's podman; remove it (the edge needs no reload for a new app leaf)`,
                    });
                }
                if (machineId(app.host) !== machineId(edge.host)) return;
                if (app.home === edge.home || app.home.startsWith(`${edge.home}/`) || edge.home.startsWith(`${app.home}/`)) {
                    ctx.addIssue({ code: "custom", path: ["edge", "home"], message: `${edge.home} and apps[${i}].home (${app.home}) are equal or nested: the edge proxy needs a home of its own` });
                }
                if (app.user === edge.user) {
                    ctx.addIssue({ code: "custom", path: ["edge", "user"], message: `${edge.user} is also apps[${i}].user: the edge proxy's trust bundle must not be writable by an app` });
                }
            });
        }
        // The Vault listener's names: a leaf role that may issue one lets an app impersonate Vault to the agents.
        const vaultHosts = [["vault.address", stack.vault.address], ["vault.agentAddress", stack.vault.agentAddress]] as const;
        for (const [key, address] of vaultHosts) {
            if (address === undefined) continue;
            let hostname = "";
            try {
                hostname = new URL(address).hostname.toLowerCase();
            } catch {
                continue; // reported by the address's own rule
            }
            stack.apps.forEach((app, i) => {
                app.leaf.allowedDomains.forEach((d, k) => {
                    if (d === hostname) {
                        ctx.addIssue({ code: "custom", path: ["apps", i, "leaf", "allowedDomains", k], message: `${d} is the host of ${key === "vault.address" ? "vault:address" : key}: the app's agent could issue a certificate for Vault's listener` });
                    }
                });
            });
        }
        // Through the edge, an app is reached by its Host: naming another app's domain would check (and route to) that app.
        stack.apps.forEach((app, i) => {
            const host = app.serve?.edgeHost;
            if (host === undefined) return;
            const owner = stack.apps.findIndex((a, j) => j !== i && a.leaf.allowedDomains.includes(host));
            if (owner >= 0) {
                ctx.addIssue({ code: "custom", path: ["apps", i, "serve", "edgeHost"], message: `${host} is in apps[${owner}].leaf.allowedDomains: an app's edge host must be one of its own names, not another app's` });
            }
        });
        const domainOwner = new Map<string, number>();
        stack.apps.forEach((app, i) => {
            app.leaf.allowedDomains.forEach((d, k) => {
                const owner = domainOwner.get(d);
                if (owner !== undefined && owner !== i) {
                    ctx.addIssue({
                        code: "custom",
                        path: ["apps", i, "leaf", "allowedDomains", k],
                        message: `${d} is also in apps[${owner}].leaf.allowedDomains: one app's agent could issue the other's frontend certificate`,
                    });
                } else {
                    domainOwner.set(d, i);
                }
            });
        });
        stack.apps.forEach((app, i) => {
            app.leaf.allowedDomains.forEach((d, k) => {
                const agentOf = stack.apps.findIndex((a) => a.agent.commonName === d);
                if (agentOf >= 0) {
                    ctx.addIssue({
                        code: "custom",
                        path: ["apps", i, "leaf", "allowedDomains", k],
                        message: `${d} is apps[${agentOf}].agent.commonName: a leaf role must not issue an agent's login name`,
                    });
                }
            });
        });
        // One ssh endpoint, one pin: two apps on the same host:port must agree on its key.
        const pins = new Map<string, number>();
        stack.apps.forEach((app, i) => {
            if (!("ssh" in app.host)) return;
            const id = sameHostId(app.host);
            const first = pins.get(id);
            if (first === undefined) {
                pins.set(id, i);
                return;
            }
            const other = stack.apps[first].host;
            if ("ssh" in other && other.ssh.hostKey !== app.host.ssh.hostKey) {
                ctx.addIssue({
                    code: "custom",
                    path: ["apps", i, "host", "ssh", "hostKey"],
                    message: `differs from apps[${first}].host.ssh.hostKey for the same host ${app.host.ssh.host} port ${app.host.ssh.port}: one of the pins is wrong`,
                });
            }
        });
        // An agent cert must never lapse between two runs: the run that renews it
        // must come while it is still valid, even when the next run is a full
        // runInterval away and somewhat late (the margin). So renewal must start at
        // least runInterval + margin before expiry, and the TTL must exceed that
        // window (or every run would renew).
        const interval = durationSeconds(stack.rotation.runInterval);
        const margin = runMarginSeconds(interval);
        stack.apps.forEach((app, i) => {
            const ttl = durationSeconds(app.agent.ttl);
            // The same rule as renewBeforeSeconds() below (not called here: the schema's own type is not known yet).
            const renew = stack.rotation.renewBeforeSeconds ?? Math.floor(ttl / 3);
            const source =
                stack.rotation.renewBeforeSeconds === undefined ? `a third of apps[${i}].agent.ttl, the default of rotation.renewBeforeSeconds` : "rotation.renewBeforeSeconds";
            if (renew < interval + margin) {
                ctx.addIssue({
                    code: "custom",
                    path: ["rotation", "runInterval"],
                    message:
                        `apps[${i}].agent.ttl ${app.agent.ttl} is renewed ${renew}s before expiry (${source}), but runs may be ${stack.rotation.runInterval} apart: ` +
                        `the agent cert could lapse between runs. Renewal must start at least rotation.runInterval + ${margin}s margin = ${interval + margin}s before expiry: ` +
                        `set rotation.renewBeforeSeconds >= ${interval + margin} with apps[${i}].agent.ttl above it, or run more often`,
                });
            }
            // ttl > renewal window: the default (a third of the TTL) always is; an
            // explicit rotation.renewBeforeSeconds is checked against every TTL below.
        });
        if (stack.rotation.renewBeforeSeconds !== undefined) {
            stack.apps.forEach((app, i) => {
                if (stack.rotation.renewBeforeSeconds! >= durationSeconds(app.agent.ttl)) {
                    ctx.addIssue({
                        code: "custom",
                        path: ["rotation", "renewBeforeSeconds"],
                        message: `must be below apps[${i}].agent.ttl (${app.agent.ttl}), or every run would renew`,
                    });
                }
            });
        }
    });

export type StackConfig = z.infer<typeof stackSchema>;
export type AppConfig = StackConfig["apps"][number];
export type HostConfig = AppConfig["host"];

/**
 * Every problem of a stack's config, one line each. A `pulumi.RunError`: the SDK
 * prints its message alone under the real CLI, without a stack trace (the
 * problems are what an operator needs; a trace of this program is not).
 */
export class ConfigError extends pulumi.RunError {
    constructor(public readonly problems: string[]) {
        super(`invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/**
 * Why a PEM bundle is not certificates only, or undefined. The listener CA file
 * is copied into the host steps' scripts (state) and to every host as ca.pem,
 * 0644: a private key (or anything else) in it would go there too. Every block
 * must be a CERTIFICATE that parses as X.509, with nothing but blank space
 * between blocks.
 */
export function certificateBundleProblem(text: string): string | undefined {
    let count = 0;
    for (const m of text.matchAll(PEM_BLOCK)) {
        if (m[1] !== "CERTIFICATE") return `holds a ${m[1]} block: it must hold certificates only (never a key)`;
        try {
            new X509Certificate(m[0]);
        } catch {
            return `holds a CERTIFICATE block (number ${count + 1}) that is not an X.509 certificate`;
        }
        count++;
    }
    if (text.replace(PEM_BLOCK, "").trim() !== "") return "holds text outside its PEM certificate blocks: it must hold certificates only";
    if (count === 0) return "holds no PEM certificate";
    return undefined;
}

function isEmptyObject(value: unknown): boolean {
    return typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0;
}

/** `["apps", 1, "leaf", "allowedDomains", 0]` -> `apps[1].leaf.allowedDomains[0]` */
export function formatPath(path: readonly PropertyKey[]): string {
    let out = "";
    for (const part of path) {
        if (typeof part === "number") out += `[${part}]`;
        else out += out === "" ? String(part) : `.${String(part)}`;
    }
    return out === "" ? "(stack)" : out;
}

interface Issue {
    path: PropertyKey[];
    message: string;
    code?: string;
    errors?: Issue[][];
}

/**
 * A union that fails (`host`: local or ssh) reports only "Invalid input". Name
 * the problems of the branch the value came closest to instead (the fewest
 * issues), so a missing `host.ssh.hostKey` is reported as exactly that.
 */
function unionBranch(issue: Issue): Issue[] {
    if (issue.code !== "invalid_union" || !issue.errors || issue.errors.length === 0) return [issue];
    const best = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
    if (best.length === 0) return [issue];
    return best.flatMap((i) => unionBranch({ ...i, path: [...issue.path, ...i.path] }));
}

/**
 * Validates the raw stack config (the three `vault-rotation:` keys plus the Vault
 * address and CA file) and returns it typed, with defaults applied.
 * Throws ConfigError listing every problem.
 */
export function parseStackConfig(raw: { rotation: unknown; vault: unknown; apps: unknown; namePrefix?: unknown; edge?: unknown }): StackConfig {
    const result = stackSchema.safeParse(raw);
    if (!result.success) {
        throw new ConfigError(result.error.issues.flatMap(unionBranch).map((i) => `${formatPath(i.path)}: ${i.message}`));
    }
    return result.data;
}

/** The epoch a run uses, and why. */
export interface EpochDecision {
    epoch: string;
    source: "explicit" | "schedule";
    /** With `rotation.every`: start of the current bucket and of the next (ISO 8601). */
    bucketStart?: string;
    nextRotation?: string;
}

/**
 * An explicit `rotation.epoch` always wins. Otherwise the epoch is the start of
 * the current `rotation.every` time bucket, so every scheduled run inside one
 * bucket sees the same epoch (a no-op) and the first run after it turns rotates.
 */
export function resolveEpoch(rotation: StackConfig["rotation"], now: Date): EpochDecision {
    if (rotation.every === undefined) {
        return { epoch: rotation.epoch!, source: "explicit" };
    }
    const periodMs = durationSeconds(rotation.every) * 1000;
    const start = Math.floor(now.getTime() / periodMs) * periodMs;
    const bucketStart = new Date(start).toISOString();
    const nextRotation = new Date(start + periodMs).toISOString();
    if (rotation.epoch !== undefined) {
        return { epoch: rotation.epoch, source: "explicit", bucketStart, nextRotation };
    }
    return { epoch: `every-${rotation.every}-${bucketStart}`, source: "schedule", bucketStart, nextRotation };
}

/** Which verification window a run is in: a run in a later window than an app's last verification verifies it again. */
export interface VerificationWindow {
    /** The trigger value: `<window start>/<every>`, or `every-run <now>`. */
    window: string;
    /** `rotation.verifyEvery` as configured (default rotation.runInterval), or `every-run`. */
    every: string;
    /** Seconds between verifications (0 for every-run). */
    everySeconds: number;
    /** Start of the next window (ISO 8601): the first time a run verifies again; "" for every-run. */
    next: string;
}

/**
 * Verification windows are `rotation.verifyEvery` long (default: runInterval)
 * and aligned to the Unix epoch, like `rotation.every`: each app's verify step
 * takes the window as a trigger, so the first run in a new window verifies
 * every app again and later runs in the same window do not (a preview right
 * after an update stays empty). A run can then find a verification at most one
 * window old. `every-run` verifies on every update.
 */
export function verificationWindow(rotation: StackConfig["rotation"], now: Date): VerificationWindow {
    const every = rotation.verifyEvery ?? rotation.runInterval;
    if (every === "every-run") return { window: `every-run ${now.toISOString()}`, every, everySeconds: 0, next: "" };
    const periodMs = durationSeconds(every) * 1000;
    const start = Math.floor(now.getTime() / periodMs) * periodMs;
    return { window: `${new Date(start).toISOString()}/${every}`, every, everySeconds: periodMs / 1000, next: new Date(start + periodMs).toISOString() };
}

/**
 * The epoch one app's credentials follow: the stack's, or, while
 * `apps[i].epoch` is set, the stack's and the app's together. Changing the
 * app's own epoch replaces that app's credentials alone; the stack's epoch
 * (a new schedule bucket) still rotates every app. An app without its own epoch
 * keeps exactly the stack's epoch, so adding the key to one app rotates no other.
 */
export function appEpoch(stackEpoch: string, app: Pick<AppConfig, "epoch">): string {
    return app.epoch === undefined ? stackEpoch : `${stackEpoch}+app:${app.epoch}`;
}

/**
 * A host step's time limit: configured, else waitSeconds + 120 (the rotate unit
 * waits up to waitSeconds for the render; the rest is restart, checks and, on
 * failure, putting the previous certificate back).
 */
export function stepTimeoutSeconds(rotation: StackConfig["rotation"]): number {
    return rotation.stepTimeoutSeconds ?? rotation.waitSeconds + 120;
}

/** Seconds before expiry at which a run renews an app's agent cert: configured, else a third of its TTL. */
export function renewBeforeSeconds(rotation: StackConfig["rotation"], app: AppConfig): number {
    return rotation.renewBeforeSeconds ?? Math.floor(durationSeconds(app.agent.ttl) / 3);
}

/**
 * Slack on top of `rotation.runInterval` for a run that starts late or takes
 * long (a queued Deployment, a slow Vault): a quarter of the interval, at least
 * an hour. It does not cover a skipped run: that is what the interval promises.
 */
export function runMarginSeconds(runIntervalSeconds: number): number {
    return Math.max(3600, Math.floor(runIntervalSeconds / 4));
}

/** What a Pulumi stack provides: the raw values of the config keys this program reads. */
export interface RawStackInputs {
    rotation: unknown;
    vault: unknown;
    apps: unknown;
    /** `vault:address` */
    vaultAddress: unknown;
    /** `vault:caCertFile` */
    vaultCaCertFile: unknown;
    /** VAULT_CACERT of the Pulumi process: the CA file when `vault:caCertFile` is not set (an ESC `files` export). */
    vaultCaCertEnv?: string;
    /** Whether the secret `vault-rotation:sshPrivateKey` is set. */
    hasSshPrivateKey: boolean;
    /** The parsed secret `vault-rotation:kvSeedData`, only to check its shape (never logged). */
    kvSeedData: unknown;
    /** `vault-rotation:namePrefix` (sharding), or undefined when not set. */
    namePrefix?: unknown;
    /** `vault-rotation:edge`, or undefined when the stack has no edge proxy. */
    edge?: unknown;
    /**
     * The non-root rehearsal (and test sandbox) runs every app as the current
     * user: only there may apps share a Unix user (VAULT_ROTATION_SAME_USER_REHEARSAL=1).
     */
    sameUserRehearsal?: boolean;
}

/** A validated stack plus the listener CA bundle read from `vault:caCertFile` (or VAULT_CACERT). */
export interface LoadedStack {
    config: StackConfig;
    listenerCaPem: string;
}

/**
 * Validates everything a stack provides, in one pass, and reads the listener CA
 * file. Pure apart from that read, so tests can call it with plain values.
 */
export function validateStackInputs(raw: RawStackInputs, readFile: (path: string) => string): LoadedStack {
    // A non-object `vault` is passed through as is, so zod reports it at `vault`.
    const merged = {
        rotation: raw.rotation,
        vault: typeof raw.vault === "object" && raw.vault !== null ? { ...raw.vault, address: raw.vaultAddress, caCertFile: raw.vaultCaCertFile } : raw.vault,
        apps: raw.apps,
        namePrefix: raw.namePrefix,
        // Pulumi.yaml gives `edge` the default {} (without a default the CLI would
        // require the key in every stack): {} means "no edge proxy".
        edge: isEmptyObject(raw.edge) ? undefined : raw.edge,
    };
    let config: StackConfig;
    try {
        config = parseStackConfig(merged);
    } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // address and caCertFile come from the standard provider keys: name those.
        throw new ConfigError(
            e.problems.map((p) => p.replace(/^vault\.address:/, "vault:address:").replace(/^vault\.caCertFile:/, "vault:caCertFile:")),
        );
    }

    const problems: string[] = [];
    // One Unix user is one principal: two apps under it on one machine could read each other's agent keys.
    if (!raw.sameUserRehearsal) {
        config.apps.forEach((app, i) => {
            const j = config.apps.findIndex((other, k) => k < i && other.user === app.user && machineId(other.host) === machineId(app.host));
            if (j >= 0) problems.push(`apps[${i}].user: ${app.user} is also apps[${j}].user on the same host: every app needs a Unix user of its own`);
        });
    }
    // One line for the missing ssh key, naming every host that needs it.
    const sshHosts = [
        ...config.apps.flatMap((app, i) => ("ssh" in app.host ? [`apps[${i}].host.ssh`] : [])),
        ...(config.edge && "ssh" in config.edge.host ? ["edge.host.ssh"] : []),
    ];
    if (sshHosts.length > 0 && !raw.hasSshPrivateKey) {
        problems.push(`vault-rotation:sshPrivateKey: required (secret) because ${sshHosts.join(", ")} ${sshHosts.length === 1 ? "is" : "are"} set`);
    }
    config.apps.forEach((app, i) => {
        if (app.kv.seed) {
            const seed = raw.kvSeedData as Record<string, unknown> | undefined;
            const data = seed && typeof seed === "object" ? seed[app.name] : undefined;
            const valid =
                typeof data === "object" && data !== null && Object.keys(data).length > 0 && Object.values(data).every((v) => typeof v === "string");
            if (!valid) {
                problems.push(
                    `vault-rotation:kvSeedData.${app.name}: apps[${i}].kv.seed is true, so this secret must map ${app.name} to an object of string values`,
                );
            }
        }
    });
    // Each stack declares (creates, and on destroy removes) its cert auth method: two
    // stacks on one Vault must not declare the same mount. A prefixed stack's mount
    // must carry its prefix, so stacks with different prefixes cannot collide there.
    const prefix = config.namePrefix;
    if (prefix !== undefined && !new RegExp(`(^|[-/])${prefix}$`).test(config.vault.certAuthPath)) {
        problems.push(
            `vault-rotation:vault.certAuthPath: with namePrefix ${JSON.stringify(prefix)} the cert auth mount must be this stack's own, ending in "-${prefix}" (e.g. "cert-${prefix}"); got ${JSON.stringify(config.vault.certAuthPath)}`,
        );
    }
    // The stack's own file wins; else the one the environment names (an ESC
    // environment writes the CA to a fresh temp file per run and exports its path).
    const envCa = raw.vaultCaCertEnv?.trim() ? raw.vaultCaCertEnv.trim() : undefined;
    const caFile = config.vault.caCertFile ?? envCa;
    const caKey = config.vault.caCertFile !== undefined ? "vault:caCertFile" : "VAULT_CACERT";
    let listenerCaPem = "";
    if (caFile === undefined) {
        problems.push(
            "vault:caCertFile: required: the PEM bundle that verifies Vault's listener (also written to each host as ca.pem); or export VAULT_CACERT, as the stack's ESC environment does (deploy/README.md)",
        );
    } else if (!caFile.startsWith("/")) {
        problems.push(`${caKey}: must be an absolute path (got ${JSON.stringify(caFile)})`);
    } else {
        try {
            listenerCaPem = readFile(caFile);
            const problem = certificateBundleProblem(listenerCaPem);
            if (problem) problems.push(`${caKey}: ${caFile} ${problem}`);
        } catch (e) {
            problems.push(`${caKey}: cannot read ${caFile}: ${(e as Error).message}`);
        }
    }
    if (problems.length > 0) throw new ConfigError(problems);
    return { config, listenerCaPem };
}

/**
 * Reads this program's config keys from the running Pulumi stack. Secrets are
 * only checked for presence and shape here; their values reach resources as
 * secret Outputs (see index.ts).
 */
export function readRawStackInputs(): RawStackInputs {
    const own = new pulumi.Config("vault-rotation");
    const vaultProvider = new pulumi.Config("vault");
    const rawSeed = pulumi.runtime.getConfig("vault-rotation:kvSeedData");
    let kvSeedData: unknown = undefined;
    if (rawSeed !== undefined) {
        try {
            kvSeedData = JSON.parse(rawSeed);
        } catch {
            throw new ConfigError(["vault-rotation:kvSeedData: must be a JSON object (set it with `pulumi config set --secret --path`)"]);
        }
    }
    return {
        rotation: own.getObject("rotation"),
        vault: own.getObject("vault"),
        apps: own.getObject("apps"),
        vaultAddress: vaultProvider.get("address"),
        vaultCaCertFile: vaultProvider.get("caCertFile"),
        vaultCaCertEnv: process.env.VAULT_CACERT,
        hasSshPrivateKey: (pulumi.runtime.getConfig("vault-rotation:sshPrivateKey") ?? "") !== "",
        kvSeedData,
        namePrefix: own.get("namePrefix"),
        edge: own.getObject("edge"),
        sameUserRehearsal: process.env.VAULT_ROTATION_SAME_USER_REHEARSAL === "1",
    };
}
