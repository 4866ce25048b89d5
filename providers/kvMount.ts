// KvMount: detects whether an existing KV mount is version 1 or 2, which decides
// the policy paths and how a secret is seeded. It never creates or changes the
// mount; `read` re-detects, so an upgrade from v1 to v2 shows up on refresh.
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import type { VaultClient } from "./vaultClient";
import { asRecord, asString, changedKeys, clientForConnection, connectionProblems, isUnknownInput, mountPathProblem, VaultHttpError } from "./vaultClient";

export type KvVersion = "1" | "2";

export interface KvMountInputs {
    connection: VaultConnection;
    /** Mount path without slashes, e.g. `secret`. */
    mount: string;
}

export interface KvMountOutputs extends KvMountInputs {
    type: "kv";
    version: KvVersion;
}

/** The KV version of a mount description (`sys/mounts/<m>` or `sys/internal/ui/mounts/<m>`). */
export function kvVersionOf(mount: string, description: Record<string, unknown>): KvVersion {
    const type = asString(description.type) ?? "";
    const version = asString(asRecord(description.options).version) ?? "";
    if (type === "kv-v2") return "2";
    // `generic` is the historic name of KV version 1.
    if (type === "kv" || type === "generic") {
        if (version === "" || version === "1") return "1";
        if (version === "2") return "2";
        throw new Error(`KV mount "${mount}" has options.version ${JSON.stringify(version)}; only KV version 1 and 2 are supported`);
    }
    throw new Error(`mount "${mount}" is not a KV mount: its type is ${JSON.stringify(type || "(none)")}`);
}

function isMissingMount(e: unknown): boolean {
    // 400 "No secret engine mount at <m>/" from sys/mounts/<m>; 404 from proxies and older versions.
    return e instanceof VaultHttpError && (e.status === 404 || (e.status === 400 && e.errors.some((m) => /no secret engine mount|not found/i.test(m))));
}

/**
 * Reads the mount description. `sys/mounts/<m>` needs a sudo-ish read most
 * tokens lack; `sys/internal/ui/mounts/<m>` is what the `vault kv` CLI uses and
 * is answered for any token that can use the mount.
 */
export async function detectKvVersion(client: VaultClient, mount: string): Promise<KvVersion> {
    const missing = () => new Error(`KV mount "${mount}" does not exist`);
    let description: Record<string, unknown>;
    try {
        const res = await client.request("GET", `sys/mounts/${mount}`);
        description = asRecord(res.body);
    } catch (e) {
        if (isMissingMount(e)) throw missing();
        if (!(e instanceof VaultHttpError && e.status === 403)) throw e;
        try {
            const res = await client.request("GET", `sys/internal/ui/mounts/${mount}`);
            description = asRecord(res.body);
        } catch (e2) {
            if (isMissingMount(e2)) throw missing();
            if (e2 instanceof VaultHttpError && e2.status === 403) {
                // Vault answers 403 here both for a path that is not a mount and for one this token may not use.
                throw new Error(
                    `KV mount "${mount}" does not exist or this token may not see it (403 from sys/mounts/${mount} and sys/internal/ui/mounts/${mount}); grant read on sys/mounts/${mount}`,
                );
            }
            throw e2;
        }
    }
    // Newer Vault nests the description under `data` and repeats it at the top.
    const data = asRecord(description.data);
    const effective = Object.keys(data).length > 0 ? data : description;
    if (asString(effective.type) === undefined) throw missing();
    return kvVersionOf(mount, effective);
}

function normalizeMount(mount: unknown): unknown {
    return typeof mount === "string" && !isUnknownInput(mount) ? mount.replace(/^\/+|\/+$/g, "") : mount;
}

export const kvMountProvider: pulumi.dynamic.ResourceProvider<KvMountInputs, KvMountOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        const mount = normalizeMount(news.mount) as string;
        if (!isUnknownInput(mount)) {
            const problem = mountPathProblem(mount);
            if (problem) failures.push({ property: "mount", reason: problem });
        }
        return { inputs: { ...news, mount }, failures };
    },

    async diff(_id, olds, news) {
        const replaces = changedKeys(olds, news, ["mount"]);
        const changes = replaces.length > 0 || changedKeys(olds, news, ["connection"]).length > 0;
        return { changes, replaces };
    },

    async create(inputs) {
        const version = await detectKvVersion(clientForConnection(inputs.connection), inputs.mount);
        return { id: inputs.mount, outs: { connection: inputs.connection, mount: inputs.mount, type: "kv", version } };
    },

    async update(_id, _olds, news) {
        const version = await detectKvVersion(clientForConnection(news.connection), news.mount);
        return { outs: { connection: news.connection, mount: news.mount, type: "kv", version } };
    },

    async read(id, props) {
        if (!props) throw new Error(`KvMount ${id}: cannot read without its previous state`);
        const version = await detectKvVersion(clientForConnection(props.connection), props.mount);
        return { id, props: { ...props, type: "kv", version } };
    },

    // Nothing to undo: the mount is not ours.
    async delete() {},
};

export interface KvMountArgs {
    /** Where Vault is; the token comes from VAULT_TOKEN when the provider runs. */
    connection: pulumi.Input<VaultConnection>;
    /** The existing KV mount, e.g. `secret`. */
    mount: pulumi.Input<string>;
}

// What each KvMount serializes as its provider: a ~1 KB forwarder to kvMountProvider, loaded by package name (forward.ts).
const kvMountForwarder = forwardingProvider("kvMountProvider", kvMountProvider);

/** An existing KV mount and its detected version. */
export class KvMount extends pulumi.dynamic.Resource {
    public readonly connection!: pulumi.Output<VaultConnection>;
    public readonly mount!: pulumi.Output<string>;
    public readonly type!: pulumi.Output<"kv">;
    public readonly version!: pulumi.Output<KvVersion>;

    constructor(name: string, args: KvMountArgs, opts?: pulumi.CustomResourceOptions) {
        super(kvMountForwarder, name, { ...args, type: undefined, version: undefined }, { ...opts }, "vault-rotation", "KvMount");
    }
}
