// CertAuthMount: the stack's cert auth method. On a Vault the runbook already
// configured, `auth/<path>` is enabled by hand: it is adopted (not enabled a
// second time, which Vault refuses with "path is already in use"), and the
// mappings already under it are recorded so the operator can see which ones this
// program does not manage. A method of another type at the path is an error
// naming the path; nothing is changed then.
//
// Deleting it disables the method only when this program enabled it: an adopted
// method (and whatever mappings of its own it still holds) stays, as it was
// before. The component protects it either way (index.ts: losing it cuts every
// agent off); docs/OPERATIONS.md, "Retiring the program", says how to remove it.
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";
import type { VaultConnection } from "./connection";
import type { VaultClient } from "./vaultClient";
import { asRecord, asString, changedKeys, clientForConnection, connectionProblems, isUnknownInput, mountPathProblem } from "./vaultClient";

export interface CertAuthMountInputs {
    connection: VaultConnection;
    /** Mount path without slashes, e.g. `cert`. */
    path: string;
    description: string;
}

export interface CertAuthMountOutputs extends CertAuthMountInputs {
    /** The method existed before this program (the runbook enabled it): adopted, and left enabled on delete. */
    adopted: boolean;
    /** The mappings (`auth/<path>/certs/*`) that existed when the method was adopted; [] when this program enabled it. */
    preexistingMappings: string[];
    accessor: string;
}

/** What `sys/auth` says is mounted at `<path>/`, or undefined. */
export async function authMethodAt(client: VaultClient, path: string): Promise<{ type: string; accessor: string; description: string } | undefined> {
    const body = asRecord(await client.read("sys/auth"));
    // Newer Vault nests the list under `data` and repeats it at the top.
    const data = Object.keys(asRecord(body.data)).length > 0 ? asRecord(body.data) : body;
    const entry = data[`${path}/`];
    if (entry === undefined) return undefined;
    const e = asRecord(entry);
    return { type: asString(e.type) ?? "", accessor: asString(e.accessor) ?? "", description: asString(e.description) ?? "" };
}

/** The error for a method of another type at the configured path. */
export function wrongTypeError(path: string, type: string): Error {
    return new Error(
        `vault.certAuthPath: auth/${path}/ is already enabled as a ${JSON.stringify(type)} auth method, not "cert": nothing was changed; choose another vault.certAuthPath, or move that method away (vault auth move) if it is not in use`,
    );
}

export const certAuthMountProvider: pulumi.dynamic.ResourceProvider<CertAuthMountInputs, CertAuthMountOutputs> = {
    async check(_olds, news) {
        const failures = connectionProblems(news.connection);
        if (!isUnknownInput(news.path)) {
            const problem = mountPathProblem(news.path);
            if (problem) failures.push({ property: "path", reason: problem });
        }
        return { inputs: news, failures };
    },

    async diff(_id, olds, news) {
        const replaces = changedKeys(olds, news, ["path"]);
        const changes = replaces.length > 0 || changedKeys(olds, news, ["connection", "description"]).length > 0;
        return { changes, replaces, deleteBeforeReplace: false };
    },

    async create(inputs) {
        const client = clientForConnection(inputs.connection);
        const existing = await authMethodAt(client, inputs.path);
        if (existing && existing.type !== "cert") throw wrongTypeError(inputs.path, existing.type);
        if (existing) {
            const preexistingMappings = (await client.list(`auth/${inputs.path}/certs`)).sort();
            // Only the description is ours to set; the method's tuning stays as the runbook left it.
            await client.write(`sys/auth/${inputs.path}/tune`, { description: inputs.description });
            return { id: inputs.path, outs: { ...inputs, adopted: true, preexistingMappings, accessor: existing.accessor } };
        }
        await client.write(`sys/auth/${inputs.path}`, { type: "cert", description: inputs.description });
        const enabled = await authMethodAt(client, inputs.path);
        return { id: inputs.path, outs: { ...inputs, adopted: false, preexistingMappings: [], accessor: enabled?.accessor ?? "" } };
    },

    async update(_id, olds, news) {
        const client = clientForConnection(news.connection);
        const existing = await authMethodAt(client, news.path);
        if (!existing) throw new Error(`auth/${news.path}/ is no longer enabled: run \`pulumi refresh\`, then \`pulumi up\` enables it again (every agent mapping is then written again)`);
        if (existing.type !== "cert") throw wrongTypeError(news.path, existing.type);
        if (olds.description !== news.description) await client.write(`sys/auth/${news.path}/tune`, { description: news.description });
        return { outs: { ...olds, ...news, accessor: existing.accessor } };
    },

    async read(id, props) {
        if (!props) throw new Error(`CertAuthMount ${id}: cannot read without its previous state`);
        const existing = await authMethodAt(clientForConnection(props.connection), props.path);
        // Gone: the engine drops it from state, and the next `pulumi up` enables it again.
        if (!existing) return { id: "", props: {} as CertAuthMountOutputs };
        if (existing.type !== "cert") throw wrongTypeError(props.path, existing.type);
        return { id, props: { ...props, description: existing.description, accessor: existing.accessor } };
    },

    async delete(_id, props) {
        if (props.adopted) return;
        await clientForConnection(props.connection).delete(`sys/auth/${props.path}`);
    },
};

export interface CertAuthMountArgs {
    /** Where Vault is; the token comes from VAULT_TOKEN when the provider runs. */
    connection: pulumi.Input<VaultConnection>;
    /** Mount path of the cert auth method, e.g. `cert`. */
    path: pulumi.Input<string>;
    description: pulumi.Input<string>;
}

// What each CertAuthMount serializes as its provider: a ~1 KB forwarder to certAuthMountProvider, loaded by package name (forward.ts).
const certAuthMountForwarder = forwardingProvider("certAuthMountProvider", certAuthMountProvider);

/** The stack's cert auth method: enabled, or adopted when it already exists. */
export class CertAuthMount extends pulumi.dynamic.Resource {
    public readonly path!: pulumi.Output<string>;
    public readonly adopted!: pulumi.Output<boolean>;
    public readonly preexistingMappings!: pulumi.Output<string[]>;
    public readonly accessor!: pulumi.Output<string>;

    constructor(name: string, args: CertAuthMountArgs, opts?: pulumi.CustomResourceOptions) {
        super(certAuthMountForwarder, name, { ...args, adopted: undefined, preexistingMappings: undefined, accessor: undefined }, { ...opts }, "vault-rotation", "CertAuthMount");
    }
}
