// The stack-config contract (DESIGN.md, "Stack config contract"), parsed once with zod.
//
// Everything that later ends up in a shell script, an HCL file or a Vault path is
// restricted here to a strict pattern; the renderers quote it again where they use it.
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

/** Where the app lives: the Pulumi runner itself, or a host reached over SSH. */
const hostSchema = z.union([
    z.object({ local: z.literal(true) }).strict(),
    z
        .object({
            ssh: z
                .object({
                    host: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^[0-9a-fA-F:.]+$/, {
                        message: "must be a hostname or an IP address",
                    }),
                    port: z.number().int().min(1).max(65535).default(22),
                    user: z.string().regex(NAME, { message: "must match [a-z][a-z0-9-]*" }),
                })
                .strict(),
        })
        .strict(),
]);

const AGENT_TTL_MAX = 14 * 86400; // an agent login cert lives days, not months
const LEAF_TTL_MAX = 90 * 86400;

const appSchema = z
    .object({
        name: z.string().regex(NAME, { message: "must match [a-z][a-z0-9-]*" }).max(40),
        user: z.string().regex(NAME, { message: "must match [a-z][a-z0-9-]*" }).max(32),
        home: homePath,
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
                renewBeforeSeconds: z.number().int().min(60).optional(),
                leafMinRemaining: duration(60, LEAF_TTL_MAX, "rotation.leafMinRemaining").default("24h"),
                waitSeconds: z.number().int().min(5).max(3600).default(120),
            })
            .strict()
            .refine((r) => r.epoch !== undefined || r.every !== undefined, { message: "set rotation.epoch, rotation.every, or both" }),
        vault: z
            .object({
                address: z.string().regex(/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, { message: "must be https://host[:port]" }),
                agentAddress: z.string().regex(/^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, { message: "must be https://host[:port]" }).optional(),
                caCertFile: z.string().regex(/^\/[A-Za-z0-9._\/-]+$/, { message: "must be an absolute path" }),
                pkiMount: z.string().regex(MOUNT, { message: "must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*" }),
                issuerCommonName: z.string().regex(CN_TEXT, { message: "must be letters, digits, spaces, '.', '_' and '-'" }),
                certAuthPath: z.string().regex(MOUNT, { message: "must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*" }),
                kvMount: z.string().regex(MOUNT, { message: "must match [A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*" }),
            })
            .strict(),
        apps: z.array(appSchema).min(1),
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

/** An invalid stack: one line per problem, each naming the key path. */
export class ConfigError extends Error {
    constructor(public readonly problems: string[]) {
        super(`invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "ConfigError";
    }
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

/**
 * Validates the raw stack config (the three `vault-rotation:` keys plus the Vault
 * address and CA file) and returns it typed, with defaults applied.
 * Throws ConfigError listing every problem.
 */
export function parseStackConfig(raw: { rotation: unknown; vault: unknown; apps: unknown }): StackConfig {
    const result = stackSchema.safeParse(raw);
    if (!result.success) {
        throw new ConfigError(result.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`));
    }
    return result.data;
}
