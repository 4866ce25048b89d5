// DestroyGuard: a protected resource that depends on every other resource of the
// stack, so that `pulumi destroy` reaches it first (nothing depends on it) and
// stops there, before any mapping is deleted or any live agent cert revoked.
// Protecting the objects themselves is not possible: every rotation replaces
// them, and the engine refuses to replace a protected resource. It holds nothing
// and does nothing in Vault.
//
// Pulumi runs this provider through a forwarder (forward.ts) that loads it by
// package name (@vault-rotation/providers), so its imports are ordinary ones.
import * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "./forward";

export interface DestroyGuardInputs {
    /** What it guards, for the reader of `pulumi stack --show-urns`. */
    guards: string;
}

export const destroyGuardProvider: pulumi.dynamic.ResourceProvider<DestroyGuardInputs, DestroyGuardInputs> = {
    async diff() {
        return { changes: false };
    },

    async create(inputs) {
        return { id: "destroy-guard", outs: inputs };
    },

    async delete() {},
};

const destroyGuardForwarder = forwardingProvider("destroyGuardProvider", destroyGuardProvider);

/** Makes `pulumi destroy` stop before it deletes anything (see docs/OPERATIONS.md, "Retiring the program"). */
export class DestroyGuard extends pulumi.dynamic.Resource {
    constructor(name: string, args: DestroyGuardInputs, opts: pulumi.CustomResourceOptions) {
        super(destroyGuardForwarder, name, { ...args }, { ...opts, protect: true }, "vault-rotation", "DestroyGuard");
    }
}
