// scripts/check-tools.sh as a newcomer who is not root runs it: a login shell's
// PATH has no /usr/sbin, where Debian puts nginx (and sshd); the tools that are
// installed must be found there, not reported missing.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { REPO_ROOT } from "../support/harness";
import { createAppUsers, removeAppUsers, runningAsRoot, userMode } from "../support/hostUsers";

/** An ordinary user's PATH as login(1) sets it (Debian: ENV_PATH in /etc/login.defs). */
function loginPath(): string {
    const defs = fs.existsSync("/etc/login.defs") ? fs.readFileSync("/etc/login.defs", "utf8") : "";
    return /^ENV_PATH\s+PATH=(\S+)/m.exec(defs)?.[1] ?? "/usr/local/bin:/usr/bin:/bin";
}

describe(`check-tools.sh for a non-root user (${userMode()})`, () => {
    it("finds the installed nginx and sshd outside a login PATH and passes", () => {
        const userPath = loginPath();
        expect(userPath.split(":")).not.toContain("/usr/sbin");
        // The script must be readable by that user: a CI clone may sit below a root-only directory.
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vr-check-tools-"));
        fs.chmodSync(dir, 0o755);
        fs.copyFileSync(path.join(REPO_ROOT, "scripts", "check-tools.sh"), path.join(dir, "check-tools.sh"));
        const users = runningAsRoot() ? createAppUsers([{ app: "tools", home: dir }]) : [];
        try {
            const env = ["env", "-i", `HOME=${dir}`, `PATH=${userPath}`, "VAULT_BIN=/bin/true", "bash", path.join(dir, "check-tools.sh"), "rehearse"];
            const r = runningAsRoot() ? spawnSync("runuser", ["-u", users[0].name, "--", ...env], { encoding: "utf8" }) : spawnSync(env[0], env.slice(1), { encoding: "utf8" });
            expect(r.stderr).not.toContain("missing system packages");
            expect(r.status).toBe(0);
        } finally {
            removeAppUsers(users);
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
