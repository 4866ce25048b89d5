// The provider object Pulumi serializes into every dynamic resource's state
// (`__provider`, in its inputs and outputs, once per resource and per
// checkpoint). Serializing the implementation itself ships every helper it
// calls, 23-42 KB per resource; under the real engine a checkpoint costs
// resources x bytes per step, so that text is what made large rotations slow.
//
// So each resource serializes a forwarder instead: an object whose methods load
// the implementation BY PACKAGE NAME from the project's own code, the local
// package `@vault-rotation/providers` (this directory; root package.json
// "file:providers", so `npm ci` links it into node_modules), and call the same
// method there. The name resolves the way Pulumi's own dynamic-provider host is
// found: from node_modules of the working directory Pulumi starts the host in,
// the project directory.
//
// Each forwarder is the whole export of a module of its own,
// forwarders/<exportName>.js. Pulumi's serializer writes an object that is a
// module's export as `require(<package path>)`, ~300 bytes, when the module's
// entry in `require.cache` lies under node_modules, and copies the object by
// value (1.8-2.8 KB) otherwise. Node keys a linked package's modules by their real
// path (this directory), so loadForwarder re-keys each forwarder's module
// under the path npm linked it at, node_modules/@vault-rotation/providers/...:
// the key `node --preserve-symlinks` would have given it, and the name that
// the dynamic-provider host's require finds. Where that is not possible (no
// such link, e.g. jest's own module registry) the by-value copy works the same
// (forwarders/forwarder.js).
import * as fs from "fs";
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";

/** The npm name of this directory as a package (providers/package.json). */
export const IMPLEMENTATION_PACKAGE = "@vault-rotation/providers";

const METHODS = ["check", "diff", "create", "read", "update", "delete"] as const;

/** The methods of `provider` that Pulumi calls, in a fixed order. */
function methodsOf(provider: object): string[] {
    return METHODS.filter((m) => typeof (provider as Record<string, unknown>)[m] === "function");
}

const loaded = new Map<string, object>();

/**
 * forwarders/<exportName>.js, required by package name, with its `require.cache`
 * entry moved from the real path to the linked one under node_modules (only
 * when both exist and differ). Memoized: a second require by name would miss
 * the moved entry and load another copy.
 */
function loadForwarder(exportName: string): object {
    const known = loaded.get(exportName);
    if (known) return known;
    const request = `${IMPLEMENTATION_PACKAGE}/forwarders/${exportName}.js`;
    const forwarder = require(request) as object;
    const real = require.resolve(request);
    const linkedDir = (require.resolve.paths(request) ?? [])
        .map((dir) => path.join(dir, ...IMPLEMENTATION_PACKAGE.split("/")))
        .find((dir) => fs.existsSync(path.join(dir, "package.json")));
    if (linkedDir !== undefined) {
        const linked = path.join(linkedDir, "forwarders", `${exportName}.js`);
        const entry = require.cache[real];
        if (linked !== real && entry?.exports === forwarder && fs.realpathSync(linked) === real) {
            delete require.cache[real];
            require.cache[linked] = entry;
        }
    }
    loaded.set(exportName, forwarder);
    return forwarder;
}

/**
 * The forwarder of the provider exported as `exportName` by the package. It
 * must have exactly the methods `implementation` has (Pulumi's behaviour
 * depends on which exist, e.g. without `update` every change is a replace),
 * else this throws when the program loads. `implementation` is only inspected,
 * never captured.
 */
export function forwardingProvider<I, O>(exportName: string, implementation: pulumi.dynamic.ResourceProvider<I, O>): pulumi.dynamic.ResourceProvider<I, O> {
    const forwarder = loadForwarder(exportName);
    const want = methodsOf(implementation).join(", ");
    const have = methodsOf(forwarder).join(", ");
    if (want !== have) {
        throw new Error(`providers/forwarders/${exportName}.js forwards [${have}] but ${exportName} has [${want}]: list exactly the implementation's methods there`);
    }
    return forwarder as pulumi.dynamic.ResourceProvider<I, O>;
}
