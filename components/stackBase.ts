// Vault objects shared by every app of the stack: the cert auth method (enabled
// once, not per app, or adopted where the runbook enabled it) and, only when
// some app asks for it, `debug-policy`.
import * as pulumi from "@pulumi/pulumi";
import * as vault from "@pulumi/vault";
import { CertAuthMount } from "../providers/certAuthMount";
import { KvMount } from "../providers/kvMount";
import { VaultTakeover } from "../providers/vaultTakeover";
import type { VaultConnection } from "../providers/connection";
import { debugPolicyName } from "../lib/naming";
import { renderDebugPolicy } from "./renderers/policies";

export interface StackBaseArgs {
    /** How the stack's dynamic providers reach Vault (no secrets). */
    connection: VaultConnection;
    /** Mount path of the cert auth method, e.g. `cert`. */
    certAuthPath: string;
    /** Create `debug-policy` (true when any app sets `agent.debugPolicy`). */
    debugPolicy: boolean;
    /** The stack's `namePrefix` (sharding): the debug policy is then `<namePrefix>-debug-policy`. */
    namePrefix?: string;
    /** Detect the KV mount's version (only when some app has KV access). */
    kvMount?: string;
}

export class StackBase extends pulumi.ComponentResource {
    /** The cert auth mount path, as an Output so mappings wait for the mount. */
    public readonly certAuthPath: pulumi.Output<string>;
    /** Resources every mapping must come after. */
    public readonly ready: pulumi.Resource[];
    /** The KV mount's version ("1" or "2"), detected from Vault; undefined without KV. */
    public readonly kvVersion?: pulumi.Output<"1" | "2">;
    /** Whether the cert auth method existed before this stack (adopted), and the mappings it held then. */
    public readonly certAuthAdopted: pulumi.Output<boolean>;
    public readonly preexistingMappings: pulumi.Output<string[]>;
    /** What the first write took over in stack-level objects (debug-policy). */
    public readonly takeoverNotes: pulumi.Output<string[]>;

    constructor(name: string, args: StackBaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vault-rotation:components:StackBase", name, {}, opts);
        // Protected: `pulumi destroy` (or a program change that drops it) would take
        // every agent's login away at once. Retiring the program on purpose is an
        // explicit `pulumi state unprotect` first (docs/OPERATIONS.md).
        const certAuth = new CertAuthMount(
            `${name}-cert-auth`,
            { connection: args.connection, path: args.certAuthPath, description: "mTLS login for Vault Agents (managed by vault-rotation)" },
            { parent: this, protect: true },
        );
        // Stacks made before the method became a CertAuthMount hold it in state as a
        // vault.AuthBackend of this very name (same parent). Reading it here under that URN,
        // with the same ID (its path), makes the engine relinquish it (stop managing it)
        // instead of deleting it, which would disable the method and every agent's login.
        // On any other stack it is a read of the method, after it exists.
        vault.AuthBackend.get(`${name}-cert-auth`, certAuth.path, undefined, { parent: this, dependsOn: [certAuth] });
        this.ready = [certAuth];
        this.takeoverNotes = pulumi.output([]);
        if (args.debugPolicy) {
            const policyName = debugPolicyName(args.namePrefix);
            const takeover = new VaultTakeover(
                `${name}-debug-policy-takeover`,
                { connection: args.connection, objects: [{ kind: "policy", name: policyName, policy: renderDebugPolicy() }] },
                { parent: this },
            );
            this.takeoverNotes = takeover.notes.apply((n) => n ?? []);
            this.ready.push(new vault.Policy(`${name}-debug-policy`, { name: policyName, policy: renderDebugPolicy() }, { parent: this, dependsOn: [takeover] }));
        }
        if (args.kvMount !== undefined) {
            // One detection for the stack: every app's KV policy paths follow it.
            const kvMount = new KvMount(`${name}-kv-mount`, { connection: args.connection, mount: args.kvMount }, { parent: this });
            this.kvVersion = kvMount.version;
        }
        this.certAuthPath = certAuth.path;
        this.certAuthAdopted = certAuth.adopted;
        this.preexistingMappings = certAuth.preexistingMappings;
        this.registerOutputs({ certAuthPath: this.certAuthPath });
    }
}
