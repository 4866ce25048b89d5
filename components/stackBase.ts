// Vault objects shared by every app of the stack: the cert auth method (enabled
// once, not per app) and, only when some app asks for it, `debug-policy`.
import * as pulumi from "@pulumi/pulumi";
import * as vault from "@pulumi/vault";
import { KvMount } from "../providers/kvMount";
import type { VaultConnection } from "../providers/connection";
import { debugPolicyName } from "../lib/naming";
import { renderDebugPolicy } from "./renderers/policies";

export interface StackBaseArgs {
    /** Mount path of the cert auth method, e.g. `cert`. */
    certAuthPath: string;
    /** Create `debug-policy` (true when any app sets `agent.debugPolicy`). */
    debugPolicy: boolean;
    /** The stack's `namePrefix` (sharding): the debug policy is then `<namePrefix>-debug-policy`. */
    namePrefix?: string;
    /** Detect the KV mount's version (only when some app has KV access). */
    kv?: { connection: VaultConnection; mount: string };
}

export class StackBase extends pulumi.ComponentResource {
    /** The cert auth mount path, as an Output so mappings wait for the mount. */
    public readonly certAuthPath: pulumi.Output<string>;
    /** Resources every mapping must come after. */
    public readonly ready: pulumi.Resource[];
    /** The KV mount's version ("1" or "2"), detected from Vault; undefined without KV. */
    public readonly kvVersion?: pulumi.Output<"1" | "2">;

    constructor(name: string, args: StackBaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vault-rotation:components:StackBase", name, {}, opts);
        const certAuth = new vault.AuthBackend(
            `${name}-cert-auth`,
            { type: "cert", path: args.certAuthPath, description: "mTLS login for Vault Agents (managed by vault-rotation)" },
            { parent: this },
        );
        this.ready = [certAuth];
        if (args.debugPolicy) {
            this.ready.push(new vault.Policy(`${name}-debug-policy`, { name: debugPolicyName(args.namePrefix), policy: renderDebugPolicy() }, { parent: this }));
        }
        if (args.kv) {
            // One detection for the stack: every app's KV policy paths follow it.
            const kvMount = new KvMount(`${name}-kv-mount`, { connection: args.kv.connection, mount: args.kv.mount }, { parent: this });
            this.kvVersion = kvMount.version;
        }
        this.certAuthPath = certAuth.path;
        this.registerOutputs({ certAuthPath: this.certAuthPath });
    }
}
