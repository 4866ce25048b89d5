// A local host step's `create` is a stub that runs the script the program kept on
// the runner by digest (components/stepScripts.ts). These run the stub with the
// real shell: it runs exactly the planned script, refuses a changed or missing
// file, and the directory it reads from is refused when someone else could write it.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { MAX_SCRIPT_BYTES, renderStepStub, resolveStepScript, scriptDigest, stepDirectory, storeStepScript, STEP_DIR_ENV } from "../../components/stepScripts";

let root: string;
let dir: string;
beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "vr-steps-"));
    fs.chmodSync(root, 0o700);
    dir = path.join(root, "steps");
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const SCRIPT = "# vault-rotation: rotate for app-a. Runs the step below.\nset -eu\nprintf 'ran %s\\n' \"$(id -u)\"\necho 'the one line' >&2\nexit 3\n\n\n";

function stubFor(script: string): string {
    return renderStepStub(script, storeStepScript(dir, script).digest);
}

function runStub(stub: string, env: NodeJS.ProcessEnv = { [STEP_DIR_ENV]: dir }) {
    return spawnSync("/bin/sh", ["-c", stub], { encoding: "utf8", env: { PATH: "/nonexistent", ...env } });
}

it("runs the stored script, with its exit status, output and stderr, from a PATH of its own", () => {
    const stub = stubFor(SCRIPT);
    const r = runStub(stub);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe(`ran ${process.getuid!()}\n`);
    expect(r.stderr).toBe("the one line\n");
});

it("keeps the script once per content, 0600 in a 0700 directory, and names step, digest and size in the stub", () => {
    const a = storeStepScript(dir, SCRIPT);
    const b = storeStepScript(dir, SCRIPT.replace(/\n+$/, "\n"));
    expect(b).toEqual(a);
    expect(a.file).toBe(path.join(dir, `${scriptDigest(SCRIPT)}.sh`));
    expect(fs.statSync(a.file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(dir)).toEqual([`${a.digest}.sh`]);
    const stub = renderStepStub(SCRIPT, a.digest);
    expect(stub.split("\n")[0]).toBe("# vault-rotation: rotate for app-a. Runs the step below.");
    expect(stub).toContain(`sha256 ${a.digest}, ${Buffer.byteLength(SCRIPT.replace(/\n+$/, "\n"))} bytes`);
    // Nothing of the runner is in it (the directory is found when it runs): another runner replaces no step.
    expect(stub).not.toContain(root);
    expect(Buffer.byteLength(stub)).toBeLessThan(1200);
    expect(resolveStepScript(stub, dir)).toBe(SCRIPT.replace(/\n+$/, "\n"));
    // A different script is a different stub: the engine replaces the step.
    expect(stubFor(SCRIPT.replace("exit 3", "exit 4"))).not.toBe(stub);
});

it("refuses to run a script that was changed after it was planned, and runs nothing of it", () => {
    const stub = stubFor(SCRIPT);
    const file = path.join(dir, `${scriptDigest(SCRIPT)}.sh`);
    const marker = path.join(root, "planted-ran");
    fs.writeFileSync(file, `touch ${marker}\n${SCRIPT}`);
    const r = runStub(stub);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`refusing to run ${file}: it is not the script this step was planned with`);
    expect(fs.existsSync(marker)).toBe(false);
    expect(() => resolveStepScript(stub, dir)).toThrow(/digest differs/);
});

it("says which file is missing when the script is not on the runner", () => {
    const stub = stubFor(SCRIPT);
    const file = path.join(dir, `${scriptDigest(SCRIPT)}.sh`);
    fs.rmSync(file);
    const r = runStub(stub);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`cannot read the step script ${file}`);
});

it("puts back a script file that is missing or changed the next time the program keeps it", () => {
    const { file } = storeStepScript(dir, SCRIPT);
    fs.writeFileSync(file, "echo changed\n");
    storeStepScript(dir, SCRIPT);
    expect(fs.readFileSync(file, "utf8")).toBe(SCRIPT.replace(/\n+$/, "\n"));
    expect(runStub(renderStepStub(SCRIPT, scriptDigest(SCRIPT))).status).toBe(3);
});

it("finds the step directory as the program does: the variable, else the home's cache (HOME, else the password file)", () => {
    const home = path.join(root, "home");
    const cached = path.join(home, ".cache", "vault-rotation", "steps");
    const stub = renderStepStub(SCRIPT, storeStepScript(cached, SCRIPT).digest);
    expect(runStub(stub, { HOME: home }).status).toBe(3);
    expect(runStub(stub, { HOME: home, [STEP_DIR_ENV]: dir }).stderr).toContain(`cannot read the step script ${dir}/`);
    expect(runStub(stub, { [STEP_DIR_ENV]: "steps" }).stderr).toContain(`${STEP_DIR_ENV}=steps: must be an absolute path`);
    const passwdHome = os.userInfo().homedir;
    expect(runStub(stub, {}).stderr).toContain(`cannot read the step script ${passwdHome}/.cache/vault-rotation/steps/`);
});

it("refuses a step directory that is a link, or under a directory others can write", () => {
    const real = path.join(root, "real");
    fs.mkdirSync(real, { mode: 0o700 });
    fs.symlinkSync(real, dir);
    expect(() => storeStepScript(dir, SCRIPT)).toThrow(`step directory ${dir}: not a directory (a symbolic link?)`);

    const open = path.join(root, "open");
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    expect(() => storeStepScript(path.join(open, "steps"), SCRIPT)).toThrow(`its ancestor ${open} is writable by group or others (mode 777)`);
    // A sticky ancestor (like /tmp) is fine: no one else can rename what is below it.
    fs.chmodSync(open, 0o1777);
    expect(storeStepScript(path.join(open, "steps"), SCRIPT).digest).toBe(scriptDigest(SCRIPT));
});

it("takes the directory from VAULT_ROTATION_STEP_DIR (absolute, no '..'), else the runner user's cache (an absolute home)", () => {
    expect(stepDirectory({ [STEP_DIR_ENV]: "/srv/steps/" })).toBe("/srv/steps");
    expect(() => stepDirectory({ [STEP_DIR_ENV]: "steps" })).toThrow(`${STEP_DIR_ENV}=steps: must be an absolute path`);
    // The stub gives the raw path to the kernel: through a link, `..` is not where path.resolve says.
    expect(() => stepDirectory({ [STEP_DIR_ENV]: "/srv/link/../steps" })).toThrow(`${STEP_DIR_ENV}=/srv/link/../steps: must not contain '..'`);
    expect(stepDirectory({})).toBe(path.join(os.homedir(), ".cache", "vault-rotation", "steps"));
    // HOME="" gives os.homedir() "", while the stub would fall back to the password file.
    expect(() => stepDirectory({}, "")).toThrow(`the runner's home directory "" is not an absolute path without '..': set HOME or ${STEP_DIR_ENV}`);
    expect(() => stepDirectory({}, "home/x")).toThrow("is not an absolute path");
});

it("refuses a planted directory even when it already holds the right script", () => {
    const open = path.join(root, "open");
    fs.mkdirSync(path.join(open, "steps"), { recursive: true });
    fs.writeFileSync(path.join(open, "steps", `${scriptDigest(SCRIPT)}.sh`), SCRIPT.replace(/\n+$/, "\n"), { mode: 0o600 });
    fs.chmodSync(open, 0o777);
    expect(() => storeStepScript(path.join(open, "steps"), SCRIPT)).toThrow(`its ancestor ${open} is writable by group or others`);
});

it("the stub refuses a link or a FIFO in the script's place, and the next write replaces it with the script itself", () => {
    const stub = stubFor(SCRIPT);
    const file = path.join(dir, `${scriptDigest(SCRIPT)}.sh`);
    // A link to a file with the right text elsewhere: whoever can repoint it decides what root reads.
    const elsewhere = path.join(root, "elsewhere.sh");
    fs.writeFileSync(elsewhere, SCRIPT.replace(/\n+$/, "\n"));
    fs.rmSync(file);
    fs.symlinkSync(elsewhere, file);
    expect(runStub(stub).stderr).toContain(`cannot read the step script ${file} on`);
    expect(runStub(stub).stderr).toContain("(missing, or not a regular file)");
    storeStepScript(dir, SCRIPT);
    expect(fs.lstatSync(file).isFile()).toBe(true);
    expect(fs.readFileSync(elsewhere, "utf8")).toBe(SCRIPT.replace(/\n+$/, "\n"));
    expect(runStub(stub).status).toBe(3);
    // A FIFO would hang root's cat until the time limit.
    fs.rmSync(file);
    expect(spawnSync("mkfifo", [file]).status).toBe(0);
    const r = spawnSync("/bin/sh", ["-c", stub], { encoding: "utf8", env: { PATH: "/nonexistent", [STEP_DIR_ENV]: dir }, timeout: 10_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("(missing, or not a regular file)");
    storeStepScript(dir, SCRIPT);
    expect(fs.lstatSync(file).isFile()).toBe(true);
});

it("refuses, when planning, a script longer than one argument of sh -c may be", () => {
    const big = `# vault-rotation: verify for app-a.\n${"#".repeat(MAX_SCRIPT_BYTES)}\n`;
    expect(() => storeStepScript(dir, big)).toThrow(`# vault-rotation: verify for app-a.: the step script is ${MAX_SCRIPT_BYTES + 37} bytes, over the ${MAX_SCRIPT_BYTES}`);
    const fits = `#${"x".repeat(MAX_SCRIPT_BYTES - 30)}\necho fits\n`;
    expect(runStub(stubFor(fits)).stdout).toBe("fits\n");
});
