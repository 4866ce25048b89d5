// What every dynamic resource of this provider serializes (see forwarder.js).
"use strict";
module.exports = require("./forwarder")("rotationCheckProvider", ["check", "diff", "create", "read", "delete"]);
