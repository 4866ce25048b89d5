// What every dynamic resource of this provider serializes (see forwarder.js).
"use strict";
module.exports = require("./forwarder")("kvSeedProvider", ["check", "diff", "create", "read", "update", "delete"]);
