// Where a local host step's script lives: a content-addressed file on the
// runner, not the step's `create` text. A command resource stores `create` twice
// in the checkpoint (inputs and outputs), and the engine rewrites the whole
// checkpoint after every step on the file backend, so scripts of 10-20 KB per step
// made a rotation's cost grow with the square of the fleet (issue 21). The
// `create` is now a stub that names the script by its SHA-256, reads it from the
// runner's step directory into memory, checks the digest and only then runs it:
// a changed script is a changed `create` (the command provider runs the step
// again, and the preview shows the old and new digest), and a file someone
// changed or removed runs nothing. The script text itself is unchanged (renderers/scripts.ts): the
// launcher, the body, the privilege model.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { sha256Hex } from "../lib/digest";

/** The environment variable that moves the runner's step directory. */
export const STEP_DIR_ENV = "VAULT_ROTATION_STEP_DIR";

/** The runner's step directory: $VAULT_ROTATION_STEP_DIR, else ~/.cache/vault-rotation/steps of the runner's user. */
export function stepDirectory(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
    const configured = env[STEP_DIR_ENV];
    if (configured !== undefined && configured !== "") {
        if (!path.isAbsolute(configured)) throw new Error(`${STEP_DIR_ENV}=${configured}: must be an absolute path`);
        // The stub hands the path to the kernel as it is; with no `..` that is the directory checked here.
        if (configured.split("/").includes("..")) throw new Error(`${STEP_DIR_ENV}=${configured}: must not contain '..'`);
        return path.resolve(configured);
    }
    // HOME="" makes os.homedir() "" while the stub falls back to the password file: refuse rather than disagree.
    if (!path.isAbsolute(home) || home.split("/").includes("..")) {
        throw new Error(`the runner's home directory ${JSON.stringify(home)} is not an absolute path without '..': set HOME or ${STEP_DIR_ENV}`);
    }
    return path.join(home, ".cache", "vault-rotation", "steps");
}

/** The longest script `/bin/sh -c "$s"` takes: one argument of at most MAX_ARG_STRLEN (131072) bytes with its NUL. */
export const MAX_SCRIPT_BYTES = 131071;

/** What the stub checks: the script with its trailing newlines cut, plus one (`$(cat f)` cuts them, `printf '%s\n'` adds one). */
export function canonicalScript(script: string): string {
    return `${script.replace(/\n+$/, "")}\n`;
}

export function scriptDigest(script: string): string {
    return sha256Hex(canonicalScript(script));
}

/**
 * Makes the step directory (0700) when missing and refuses one that another
 * user could write into or swap: it and each ancestor must be owned by root or
 * by the runner's user and not writable by group or others (an ancestor may be
 * sticky, like /tmp). The digest check in the stub is what keeps a changed file
 * from running; this keeps a planted directory from being used at all.
 */
export function ensureStepDirectory(dir: string): void {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const me = process.geteuid ? process.geteuid() : 0;
    const own = fs.lstatSync(dir);
    if (!own.isDirectory()) throw new Error(`step directory ${dir}: not a directory (a symbolic link?)`);
    if (own.uid !== me) throw new Error(`step directory ${dir}: owned by uid ${own.uid}, not by this runner's user (uid ${me})`);
    if ((own.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
    for (let d = path.dirname(fs.realpathSync(dir)); ; d = path.dirname(d)) {
        const st = fs.statSync(d);
        if (st.uid !== 0 && st.uid !== me) throw new Error(`step directory ${dir}: its ancestor ${d} is owned by uid ${st.uid}, not root or this runner's user`);
        if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
            throw new Error(`step directory ${dir}: its ancestor ${d} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`);
        }
        if (d === "/") break;
    }
}

/**
 * Writes the script as `<dir>/<sha256>.sh` (0600, temp file and rename) unless a
 * regular file of this user with exactly its bytes is there already; returns its
 * path. The directory is checked every time, so a planted one is refused even
 * when it already holds the right scripts, and a link, FIFO or other file in the
 * script's place is replaced (rename replaces the entry, never its target).
 */
export function storeStepScript(dir: string, script: string): { file: string; digest: string } {
    const canonical = canonicalScript(script);
    const text = Buffer.from(canonical, "utf8");
    const digest = sha256Hex(text);
    const file = path.join(dir, `${digest}.sh`);
    if (text.length > MAX_SCRIPT_BYTES) {
        const title = canonical.split("\n", 1)[0];
        throw new Error(`${title}: the step script is ${text.length} bytes, over the ${MAX_SCRIPT_BYTES} that one argument of \`sh -c\` may have`);
    }
    ensureStepDirectory(dir);
    const me = process.geteuid ? process.geteuid() : 0;
    try {
        const st = fs.lstatSync(file);
        if (st.isFile() && st.uid === me && (st.mode & 0o077) === 0 && fs.readFileSync(file).equals(text)) return { file, digest };
    } catch {
        // not there yet: written below
    }
    const tmp = path.join(dir, `.${digest}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`);
    fs.writeFileSync(tmp, text, { mode: 0o600, flag: "wx" });
    fs.renameSync(tmp, file);
    return { file, digest };
}

/**
 * The `create` of a local host step: the script's own first line (which step,
 * which app), its digest and size, then: find the runner's step directory (as
 * stepDirectory does, at run time, so the stub is the same on every runner and a
 * change of runner replaces nothing), read the file, check the digest, and run
 * what was read (never the file again, so it cannot change in between).
 */
export function renderStepStub(script: string, digest: string): string {
    const text = canonicalScript(script);
    const first = text.slice(0, text.indexOf("\n"));
    const title = first.startsWith("# ") ? first : "# vault-rotation: a host step";
    const bytes = Buffer.byteLength(text);
    return `${title}
# The script (sha256 ${digest}, ${bytes} bytes) is kept in the runner's step directory.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
d=\${${STEP_DIR_ENV}:-\${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/vault-rotation/steps}
case $d in /*) ;; *) printf '%s\\n' "vault-rotation: ${STEP_DIR_ENV}=$d: must be an absolute path" >&2; exit 1 ;; esac
f=$d/${digest}.sh
{ [ -f "$f" ] && [ ! -L "$f" ] && s=$(cat -- "$f"); } || { printf '%s\\n' "vault-rotation: cannot read the step script $f on $(uname -n) (missing, or not a regular file): the program writes it in the same run; run again" >&2; exit 1; }
[ "$(printf '%s\\n' "$s" | sha256sum)" = "${digest}  -" ] || { printf '%s\\n' "vault-rotation: refusing to run $f: it is not the script this step was planned with (sha256 differs)" >&2; exit 1; }
exec /bin/sh -c "$s" vault-rotation-step
`;
}

const STUB_DIGEST = /^# The script \(sha256 ([0-9a-f]{64}), \d+ bytes\) is kept in the runner's step directory\.$/m;

/** The full script behind a step's `create` (from the step directory), or the `create` itself when it is not a stub. For tests and tools. */
export function resolveStepScript(create: string, dir: string = stepDirectory()): string {
    const m = STUB_DIGEST.exec(create);
    if (!m) return create;
    const file = path.join(dir, `${m[1]}.sh`);
    const text = fs.readFileSync(file, "utf8");
    if (scriptDigest(text) !== m[1]) throw new Error(`${file}: digest differs from the stub's ${m[1]}`);
    return text;
}
