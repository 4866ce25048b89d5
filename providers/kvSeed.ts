// KvSeed: makes sure an app's KV path exists, writing the seed data only when the
// path is absent and seeding is on. It never overwrites and never deletes: the
// secret belongs to the app's operators once it exists, also after `destroy`.
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import type { VaultClient } from "./vaultClient";
import { changedKeys, clientForConnection, connectionProblems, isUnknownInput, mountPathProblem, VaultHttpError } from "./vaultClient";

export type KvSeedStatus = "existed" | "seeded" | "missing";

export interface KvSeedInputs {
    connection: VaultConnection;
    mount: string;
    version: "1" | "2";
    /** Secret path inside the mount, e.g. `apps/app-a`. */
    path: string;
    /** Write `data` when the path is absent. */
    seed: boolean;
    /** Seed data (secret); required when `seed` is true. */
    data?: Record<string, string>;
}

export interface KvSeedOutputs extends KvSeedInputs {
    status: KvSeedStatus;
}

const SECRET_PATH = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

function isCasConflict(e: unknown): boolean {
    return e instanceof VaultHttpError && e.status === 400 && e.errors.some((m) => /check-and-set/i.test(m));
}

/** Whether anything is stored at the path; for v2 any metadata counts, even if every version is deleted or destroyed. */
export async function kvPathExists(client: VaultClient, mount: string, version: "1" | "2", path: string): Promise<boolean> {
    const location = version === "2" ? `${mount}/metadata/${path}` : `${mount}/${path}`;
    return (await client.read(location)) !== undefined;
}

/** Seeds the path when absent and allowed; reports what it found or did. */
export async function ensureKvSeed(client: VaultClient, inputs: Pick<KvSeedInputs, "mount" | "version" | "path" | "seed" | "data">): Promise<KvSeedStatus> {
    const { mount, version, path } = inputs;
    if (await kvPathExists(client, mount, version, path)) return "existed";
    if (!inputs.seed) return "missing";
    const data = inputs.data ?? {};
    if (version === "2") {
        try {
            // cas=0: Vault writes only if the path has no version yet.
            await client.write(`${mount}/data/${path}`, { options: { cas: 0 }, data });
        } catch (e) {
            // Someone wrote it between our check and our write: theirs stays. (A retried
            // write whose first attempt did land also ends here; the data is ours then.)
            if (isCasConflict(e)) return "existed";
            throw e;
        }
        return "seeded";
    }
    // KV v1 has no check-and-set. Re-reading right before the write narrows the
    // window, but a writer landing between this read and our write would be
    // overwritten. Seeding is meant for paths nobody else creates.
    if (await kvPathExists(client, mount, version, path)) return "existed";
    await client.write(`${mount}/${path}`, data);
    return "seeded";
}

export const kvSeedProvider: pulumi.dynamic.ResourceProvider<KvSeedInputs, KvSeedOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        if (!isUnknownInput(news.mount)) {
            const problem = mountPathProblem(news.mount);
            if (problem) failures.push({ property: "mount", reason: problem });
        }
        if (!isUnknownInput(news.version) && news.version !== "1" && news.version !== "2") {
            failures.push({ property: "version", reason: `must be "1" or "2" (got ${JSON.stringify(news.version)})` });
        }
        if (!isUnknownInput(news.path) && (typeof news.path !== "string" || !SECRET_PATH.test(news.path) || news.path.split("/").some((s) => s === "." || s === ".."))) {
            failures.push({ property: "path", reason: `must be a relative secret path such as apps/app-a (got ${JSON.stringify(news.path)})` });
        }
        if (!isUnknownInput(news.seed) && typeof news.seed !== "boolean") {
            failures.push({ property: "seed", reason: "must be a boolean" });
        }
        const data: unknown = news.data;
        if (data !== undefined && !isUnknownInput(data)) {
            // Reasons name keys at most, never values: the data is secret.
            if (typeof data !== "object" || data === null || Array.isArray(data)) {
                failures.push({ property: "data", reason: "must be a map of string keys to string values" });
            } else {
                const badKeys = Object.entries(data as Record<string, unknown>)
                    .filter(([, v]) => typeof v !== "string" && !isUnknownInput(v))
                    .map(([k]) => k);
                if (badKeys.length > 0) failures.push({ property: "data", reason: `values must be strings (not for keys: ${badKeys.join(", ")})` });
            }
        }
        if (news.seed === true && (data === undefined || (typeof data === "object" && data !== null && Object.keys(data).length === 0))) {
            failures.push({ property: "data", reason: "seed is true but there is no seed data: give data, or set seed to false" });
        }
        return { inputs: news, failures };
    },

    async diff(_id, olds, news) {
        const replaces = changedKeys(olds, news, ["mount", "path", "version"]);
        const changes = replaces.length > 0 || changedKeys(olds, news, ["connection", "seed", "data"]).length > 0;
        // Replacing never deletes the old path (delete is a no-op), so the order does not matter.
        return { changes, replaces };
    },

    async create(inputs) {
        const status = await ensureKvSeed(clientForConnection(inputs.connection), inputs);
        return { id: `${inputs.mount}/${inputs.path}`, outs: { ...inputs, status } };
    },

    // Same as create: a newly enabled seed writes an absent path; existing data is left alone.
    async update(_id, _olds, news) {
        const status = await ensureKvSeed(clientForConnection(news.connection), news);
        return { outs: { ...news, status } };
    },

    async read(id, props) {
        if (!props) throw new Error(`KvSeed ${id}: cannot read without its previous state`);
        const exists = await kvPathExists(clientForConnection(props.connection), props.mount, props.version, props.path);
        // "seeded" stays as long as the path exists: it records that this stack wrote it.
        const status: KvSeedStatus = !exists ? "missing" : props.status === "seeded" ? "seeded" : "existed";
        return { id, props: { ...props, status } };
    },

    // Never deletes: the secret outlives this stack (also when the resource is replaced).
    async delete() {},
};

export interface KvSeedArgs {
    /** Where Vault is; the token comes from VAULT_TOKEN when the provider runs. */
    connection: pulumi.Input<VaultConnection>;
    /** KV mount, e.g. `secret`. */
    mount: pulumi.Input<string>;
    /** KV version of the mount (from KvMount). */
    version: pulumi.Input<"1" | "2">;
    /** Secret path inside the mount, e.g. `apps/app-a`. */
    path: pulumi.Input<string>;
    /** Write `data` when the path is absent. */
    seed: pulumi.Input<boolean>;
    /** Seed data; kept secret in state. Required when `seed` is true. */
    data?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

// What each KvSeed serializes as its provider: a ~1 KB forwarder to kvSeedProvider, loaded by package name (forward.ts).
const kvSeedForwarder = forwardingProvider("kvSeedProvider", kvSeedProvider);

/** Seeds an absent KV path once; reports `existed`, `seeded` or `missing`. */
export class KvSeed extends pulumi.dynamic.Resource {
    public readonly connection!: pulumi.Output<VaultConnection>;
    public readonly mount!: pulumi.Output<string>;
    public readonly version!: pulumi.Output<"1" | "2">;
    public readonly path!: pulumi.Output<string>;
    public readonly seed!: pulumi.Output<boolean>;
    public readonly data!: pulumi.Output<Record<string, string> | undefined>;
    public readonly status!: pulumi.Output<KvSeedStatus>;

    constructor(name: string, args: KvSeedArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            kvSeedForwarder,
            name,
            // Wrapped here as well so the input copy in state is secret even if the caller passed plain data.
            { ...args, data: args.data === undefined ? undefined : pulumi.secret(args.data), status: undefined },
            { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "data"] },
            "vault-rotation",
            "KvSeed",
        );
    }
}
