// Real unprivileged Unix users for the apps of a test or a rehearsal.
//
// As root (CI, `sudo npm test`) every app gets a user of its own, created with
// `useradd --system` under a unique name and removed again, so every host step
// really crosses the root -> app user boundary through `setpriv`. As anyone
// else there is no second user to switch to: every app is the current user
// ("same-user mode"), and the host steps run without switching.
import { execFileSync, spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface AppUser {
    name: string;
    uid: number;
    gid: number;
    /** Made by createAppUsers (and removed by removeAppUsers); false in same-user mode. */
    created: boolean;
}

export type UserMode = "real users (root -> setpriv -> app user)" | "same user (not root: no switch)";

export function runningAsRoot(): boolean {
    return process.getuid?.() === 0;
}

export function userMode(): UserMode {
    return runningAsRoot() ? "real users (root -> setpriv -> app user)" : "same user (not root: no switch)";
}

function idOf(name: string, flag: "-u" | "-g"): number {
    return Number(execFileSync("id", [flag, name], { encoding: "utf8" }).trim());
}

/**
 * useradd takes a lock on /etc/passwd; parallel test workers may meet there, so retry briefly.
 * Without a login shell the user has `nologin` and a locked password (`!`).
 * With one (an app on an ssh host: sshd runs the command through the user's
 * shell, `-c`) the shell is /bin/sh and the password `*`: still no password
 * can match, but sshd (without PAM) treats a `!` account as locked and would
 * refuse even a public-key login.
 */
function useradd(name: string, home: string, loginShell: boolean): void {
    const shell = loginShell ? ["--shell", "/bin/sh", "--password", "*"] : ["--shell", "/usr/sbin/nologin"];
    for (let attempt = 0; ; attempt++) {
        const r = spawnSync("useradd", ["--system", "--no-create-home", "--home-dir", home, ...shell, "--user-group", name], { encoding: "utf8" });
        if (r.status === 0) return;
        if (attempt >= 20 || !/lock|try again/i.test(r.stderr)) throw new Error(`useradd ${name} failed: ${r.stderr.trim() || r.error?.message}`);
        spawnSync("sleep", ["0.2"]);
    }
}

/**
 * One user per app. `homes` are the directories the users will own; they are
 * recorded in /etc/passwd but not created here. `loginShell`: the user logs in
 * over ssh (see useradd above).
 */
export function createAppUsers(apps: { app: string; home: string; loginShell?: boolean }[]): AppUser[] {
    if (!runningAsRoot()) {
        const me = os.userInfo();
        return apps.map(() => ({ name: me.username, uid: me.uid, gid: me.gid, created: false }));
    }
    const tag = crypto.randomBytes(3).toString("hex");
    return apps.map(({ app, home, loginShell }, i) => {
        // Unique per run (parallel jest workers, a rehearsal beside the tests), at most 32 characters.
        const name = `vr${tag}-${i}-${app}`.slice(0, 32).replace(/-+$/, "");
        useradd(name, home, loginShell === true);
        return { name, uid: idOf(name, "-u"), gid: idOf(name, "-g"), created: true };
    });
}

/** Removes the users createAppUsers made (after their processes were stopped). */
export function removeAppUsers(users: AppUser[]): void {
    for (const u of users) {
        if (!u.created) continue;
        spawnSync("pkill", ["-KILL", "-u", String(u.uid)]);
        for (let attempt = 0; attempt < 20; attempt++) {
            const r = spawnSync("userdel", [u.name], { encoding: "utf8" });
            if (r.status === 0 || /does not exist/.test(r.stderr)) break;
            spawnSync("sleep", ["0.2"]);
        }
    }
}

/** Creates `dir` (and missing parents, owned by whoever runs this) and gives it to `user` with `mode`. */
export function makeOwnedDir(dir: string, user: AppUser, mode: number): void {
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, mode);
    if (runningAsRoot()) fs.chownSync(dir, user.uid, user.gid);
}

/**
 * A directory an app user can reach: every ancestor must be searchable by
 * others. Returns `preferred` when it is, else a fresh directory under the
 * system temp dir (a CI clone may live below a directory only root can enter).
 */
export function reachableDir(preferred: string, prefix: string): string {
    if (!runningAsRoot()) return preferred;
    let dir = path.dirname(path.resolve(preferred));
    let reachable = true;
    for (;;) {
        if ((fs.statSync(dir).mode & 0o001) === 0) reachable = false;
        const up = path.dirname(dir);
        if (up === dir) break;
        dir = up;
    }
    if (reachable) return preferred;
    const fallback = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    fs.chmodSync(fallback, 0o755);
    return fallback;
}
