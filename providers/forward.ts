// The provider object Pulumi serializes into every dynamic resource's state
// (`__provider`, in its inputs and outputs, once per resource and per
// checkpoint). Serializing the implementation itself ships every helper it
// calls, 23-42 KB per resource; under the real engine a checkpoint costs
// resources x bytes per step, so that text is what made large rotations slow.
//
// A forwarder is ~1 KB: each method loads the implementation BY PACKAGE NAME
// from the project's own code, the local package `@vault-rotation/providers`
// (this directory; root package.json "file:providers", so `npm ci` links it into
// node_modules), and calls the same method there. The name resolves the way
// Pulumi's own dynamic-provider host is found: from node_modules of the working
// directory Pulumi starts the host in, the project directory.
//
// Nothing here may reference an imported binding inside the returned methods:
// the serializer would copy that whole local module by value, which is exactly
// what this file exists to avoid. The methods use only `require`, strings and
// the method's own arguments.
import type * as pulumi from "@pulumi/pulumi";

/** The npm name of this directory as a package (providers/package.json). */
export const IMPLEMENTATION_PACKAGE = "@vault-rotation/providers";

const METHODS = ["check", "diff", "create", "read", "update", "delete"] as const;
type Method = (typeof METHODS)[number];

/**
 * Calls `method` of the provider exported as `exportName` by the package. A
 * module-level function so that the serializer ships it once per provider, not
 * once per method.
 */
function callImplementation(exportName: string, method: string, args: unknown[]): unknown {
    let loaded;
    try {
        loaded = require("@vault-rotation/providers");
    } catch (e) {
        throw new Error(`cannot load @vault-rotation/providers from ${process.cwd()}: run \`npm ci\` in the Pulumi project directory (${e})`);
    }
    return loaded[exportName][method](...args);
}

/**
 * A provider with exactly the methods `implementation` has (Pulumi's behaviour
 * depends on which exist, e.g. without `update` every change is a replace), each
 * forwarding to `require("@vault-rotation/providers")[exportName]` at run time.
 * `implementation` is only inspected for its method names, never captured.
 */
export function forwardingProvider<I, O>(exportName: string, implementation: pulumi.dynamic.ResourceProvider<I, O>): pulumi.dynamic.ResourceProvider<I, O> {
    const forwarder: Record<string, unknown> = {};
    for (const method of METHODS.filter((m: Method) => typeof implementation[m] === "function")) {
        forwarder[method] = (...args: unknown[]) => callImplementation(exportName, method, args);
    }
    return forwarder as unknown as pulumi.dynamic.ResourceProvider<I, O>;
}
