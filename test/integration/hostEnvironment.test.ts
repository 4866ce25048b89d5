// Nothing of the runner's environment reaches the app user. While the whole
// program applies and rotates the local stack (real Vault, real Vault Agents),
// a watcher process reads /proc/<pid>/environ of every process running as an
// app user (as root; in same-user mode: every process of the sandbox's steps,
// agents, hooks and shims) and records what it saw.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { applyProgram } from "../support/applier";
import { withEpoch } from "../support/harness";
import { renamedLocalStack } from "../support/stacks";
import { runningAsRoot } from "../support/hostUsers";
import { prepareSandbox, Sandbox } from "../support/sandbox";
import { testVaultFromEnv } from "../support/vaultAdmin";

const vault = testVaultFromEnv();
let sandbox: Sandbox;

/** Scans /proc until told to stop; for each matching process: argv and environment (names, and which sentinels appear). */
const WATCHER = `
const fs = require("fs");
const [uids, marker, sentinels, out, stop] = [JSON.parse(process.argv[1]), process.argv[2], JSON.parse(process.argv[3]), process.argv[4], process.argv[5]];
const seen = {};
function scan() {
  for (const pid of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const uid = Number(/^Uid:\\s+(\\d+)/m.exec(fs.readFileSync("/proc/" + pid + "/status", "utf8"))[1]);
      const argv = fs.readFileSync("/proc/" + pid + "/cmdline", "utf8").split("\\0").join(" ").trim();
      // Same-user mode: the launcher itself is the runner's child (it has the runner's environment by
      // design and switches nothing), through its first exec, the env that empties the environment;
      // everything that starts must have none of it.
      const launcher = argv.includes("-c # vault-rotation:") || argv.startsWith("env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin ");
      const mine = uids.length > 0 ? uids.includes(uid) : (argv.includes(marker) || argv.includes("vault-rotation:")) && !launcher;
      if (!mine || argv === "") continue;
      const env = fs.readFileSync("/proc/" + pid + "/environ", "utf8");
      // The step bodies' name (vault-rotation:<app>:<step>) is their last argument.
      const key = pid + " " + (argv.length > 200 ? argv.slice(0, 120) + " ... " + argv.slice(-60) : argv);
      if (seen[key]) continue;
      seen[key] = { names: env.split("\\0").filter(Boolean).map((l) => l.split("=")[0]).sort(), leaked: sentinels.filter((s) => env.includes(s)).length };
    } catch { /* gone, or not readable */ }
  }
}
const timer = setInterval(() => {
  scan();
  if (fs.existsSync(stop)) { clearInterval(timer); fs.writeFileSync(out, JSON.stringify(seen)); }
}, 15);
`;

const SENTINELS: Record<string, string> = {
    PULUMI_CONFIG_PASSPHRASE: "sentinel-passphrase-5b7e",
    PULUMI_ACCESS_TOKEN: "pul-sentinel-access-token-9c1d",
    PULUMI_OIDC_TOKEN: "eyJsentinel.oidc.token",
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: "sentinel-actions-oidc",
    SSH_PRIVATE_KEY: "-----BEGIN OPENSSH PRIVATE KEY-----sentinel",
};

afterAll(() => {
    sandbox?.close();
    if (sandbox) fs.rmSync(sandbox.root, { recursive: true, force: true });
});

it("keeps VAULT_TOKEN, PULUMI_*, OIDC tokens and the ssh key out of every app-user process", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-env-"));
    // The local stack under names of its own: other test files share this Vault (roles, mappings, KV paths).
    const config = renamedLocalStack("envt");
    sandbox = prepareSandbox({ root, config, vault });
    // The hook lingers in each reload, so the watcher sees it too.
    for (const app of sandbox.stack.apps) fs.writeFileSync(path.join(sandbox.podmanDir(app.name), "delay"), "0.3");
    const uids = runningAsRoot() ? sandbox.stack.apps.map((a) => sandbox.user(a.name).uid) : [];
    const out = path.join(root, "watched.json");
    const stop = path.join(root, "stop-watching");
    const watcher = spawn(process.execPath, ["-e", WATCHER, JSON.stringify(uids), root, JSON.stringify([vault.token, ...Object.values(SENTINELS)]), out, stop], { stdio: "inherit" });
    const saved = { ...process.env };
    Object.assign(process.env, SENTINELS);
    try {
        // applyProgram puts the real Vault token in VAULT_TOKEN, as under `pulumi up`.
        const first = await applyProgram({ config: sandbox.config, vault, stack: "local", log: () => undefined });
        await applyProgram({ config: withEpoch(sandbox.config, "env-2"), state: first.state, vault, stack: "local", log: () => undefined });
    } finally {
        process.env = saved;
        fs.writeFileSync(stop, "");
        await new Promise((resolve) => watcher.on("close", resolve));
    }
    const seen = JSON.parse(fs.readFileSync(out, "utf8")) as Record<string, { names: string[]; leaked: number }>;
    const argvs = Object.keys(seen);
    // The watcher really saw the agents, the hooks and the step bodies.
    expect(argvs.some((a) => / agent -config /.test(a))).toBe(true);
    expect(argvs.some((a) => a.includes("reload-tls.sh"))).toBe(true);
    expect(argvs.some((a) => a.includes("vault-rotation:envt-a:rotate") || a.includes("vault-rotation:envt-b:rotate"))).toBe(true);
    const offending = Object.entries(seen).filter(
        ([, v]) => v.leaked > 0 || v.names.some((n) => n === "VAULT_TOKEN" || n.startsWith("PULUMI_") || n.includes("_OIDC_") || n.startsWith("SSH_") || n === "ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    );
    expect(offending).toEqual([]);
}, 300_000);
