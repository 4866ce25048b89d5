// Builds the object each providers/forwarders/<exportName>.js module exports:
// the provider that dynamic resources serialize as their `__provider` (see
// ../forward.ts for why a forwarder and why a module of its own).
//
// Serialized by reference (the program's case, ../forward.ts): `__provider` is
// one `require("@vault-rotation/providers/forwarders/<name>.js")` and this file
// runs, unserialized, in the dynamic-provider host.
// Serialized by value (e.g. under jest): the methods below are
// copied with `callImplementation`, so they may use only `require`, strings and
// their own arguments, no binding of this module other than that function.
"use strict";

function callImplementation(exportName, method, args) {
    let loaded;
    try {
        loaded = require("@vault-rotation/providers");
    } catch (e) {
        throw new Error(`cannot load @vault-rotation/providers from ${process.cwd()}: run \`npm ci\` in the Pulumi project directory (${e})`);
    }
    return loaded[exportName][method](...args);
}

/** A provider with exactly `methods`, each calling the same method of the package's export `exportName`. */
module.exports = function forwarder(exportName, methods) {
    const provider = {};
    for (const method of methods) {
        provider[method] = (...args) => callImplementation(exportName, method, args);
    }
    return provider;
};
