// `npm run test:engine`: the engine tier (test/engine/), when the Pulumi CLI and the
// vault and command plugins are installed; otherwise one line naming what is
// missing and the script that installs it, and exit 1.
import { spawnSync } from "child_process";
import { findEngine } from "../test/support/engine";

const found = findEngine();
if (!found.tools) {
    process.stderr.write(`test:engine: ${found.missing}\n`);
    process.exit(1);
}
process.stdout.write(`test:engine: pulumi ${found.tools.version}, plugins in ${found.tools.pulumiHome}\n`);
const r = spawnSync("npx", ["jest", "--selectProjects", "engine", "--runInBand", ...process.argv.slice(2)], { stdio: "inherit" });
process.exit(r.status ?? 1);
