// Preloaded into every node process of a profiled CLI run (bench:fleet --cpu-prof
// sets NODE_OPTIONS=--require <this file>, since node refuses --cpu-prof in
// NODE_OPTIONS): starts V8's sampling profiler in the process and writes the
// profile to $VAULT_ROTATION_CPU_PROF_DIR/<pid>.cpuprofile when it exits, or when
// the engine stops it with SIGINT or SIGTERM (a plugin is stopped that way).
// A benchmark's instrument only; nothing of the program loads it.
"use strict";
const dir = process.env.VAULT_ROTATION_CPU_PROF_DIR;
if (dir) {
    const fs = require("fs");
    const path = require("path");
    const inspector = require("inspector");
    const session = new inspector.Session();
    session.connect();
    session.post("Profiler.enable");
    session.post("Profiler.setSamplingInterval", { interval: 1000 });
    session.post("Profiler.start");
    let written = false;
    const write = () => {
        if (written) return;
        written = true;
        // The in-process session answers synchronously, so this works in an exit handler.
        session.post("Profiler.stop", (err, result) => {
            if (!err) fs.writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
        });
    };
    process.on("exit", write);
    for (const signal of ["SIGINT", "SIGTERM"]) {
        process.on(signal, () => {
            write();
            process.exit(128 + (signal === "SIGINT" ? 2 : 15));
        });
    }
}
