// Entry point of the local package @vault-rotation/providers, which the
// serialized forwarders (forward.ts) load by name inside Pulumi's
// dynamic-provider host. The implementations are the TypeScript modules of this
// directory, loaded from source so that what runs is always what is checked in
// and tested (no build output to go stale).
//
// The Pulumi program runs under ts-node, but the provider host is a plain node
// process: register ts-node there (transpile only, this repository's tsconfig)
// unless something already loads .ts files (ts-node in the program, jest).
"use strict";
const path = require("path");

if (!require.extensions || !require.extensions[".ts"]) {
    require("ts-node").register({ transpileOnly: true, project: path.join(__dirname, "..", "tsconfig.json") });
}

module.exports = require("./implementations");
